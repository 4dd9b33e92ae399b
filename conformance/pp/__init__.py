"""Pipeline-parallel checks on real processors and tiny models, through documented names only.

- :mod:`.spec`: the family record's ``"pp"`` block, its token arithmetic and the (B, n) grid;
- :mod:`.batches`: collated batches and the documented PP media calls, made the way any conforming
  implementation accepts them (keywords, copies, both chunk layouts, both staging return forms);
- :mod:`.split`: the harness's own stage split (test infrastructure; the implementation only patches);
- :mod:`.chunking`, :mod:`.staged`, :mod:`.distributed` (with :mod:`.worker`, the rank side), :mod:`.golden`:
  the four checks.

Importing this package imports none of them, so spawned ranks load only what :mod:`.worker` needs.
"""
