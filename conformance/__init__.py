"""vlmspec conformance suite: a pytest plugin plus checks that run real processors through vlmspec."""
