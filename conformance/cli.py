"""The ``vlmspec`` console command (``[project.scripts] vlmspec = "conformance.cli:main"``).

Subcommands::

    vlmspec report [--dir DIR]                 the last conformance report, as Markdown
    vlmspec families [--json]                  the family registry (fixtures/families/*.json)
    vlmspec pack MODEL [--force]               materialize a model's offline pack, print its provenance
    vlmspec provenance MODEL [--write]         the PROVENANCE.md file table of its folders (--write: update it)
    vlmspec diff-template MODEL [--fixture ID] rendered template and labeled spans of one fixture
    vlmspec goldens [MODEL]                    golden folders, their transformers lines and overlays

It lives in ``conformance`` (not ``vlmspec``) because it reads the registry, the fixture corpus and
the report; the library never imports this package. Exit status: 0 on success, 2 for a usage
problem (unknown model or fixture, no report yet), 1 when a pack cannot be built.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]

# Supervised spans are wrapped in these markers when color is off (piped output, files, logs).
OPEN, CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧
MASK_OPEN, MASK_CLOSE = "\u2039", "\u203a"  # ‹ › : attention_mask == 0 (padding, masked fake image)
_GREEN, _DIM, _BOLD, _RESET = "\x1b[1;32m", "\x1b[2m", "\x1b[1m", "\x1b[0m"


class UsageProblem(Exception):
    """Bad arguments or missing inputs: printed without a traceback, exit status 2."""


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
def _report_path(directory: str | None) -> Path:
    candidates = [Path(directory)] if directory else [Path.cwd() / "reports", ROOT / "reports"]
    for d in candidates:
        path = d / "conformance-report.json"
        if path.is_file():
            return path
    where = " or ".join(str(d / "conformance-report.json") for d in candidates)
    raise UsageProblem(f"no conformance report at {where}; run `pytest conformance --model ...` first")


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from . import golden
    from .report import to_markdown

    path = _report_path(args.dir)
    report = json.loads(path.read_text(encoding="utf-8"))
    out.write(to_markdown(report))
    version = str(report.get("transformers", ""))
    try:
        line = golden.version_line(version)
    except ValueError:
        line = None
    if line is not None:
        pinned = golden.pinned_line()
        where = (
            "the base goldens"
            if line == pinned
            else f"the {golden.OVERLAY_PREFIX}{line} overlays where present, else the base goldens"
        )
        out.write(
            f"\ngoldens: transformers {version} (line {line}; base goldens rendered with {pinned}) "
            f"was compared with {where}\n"
        )
    out.write(f"\n_source: {path}_\n")
    return 0


# --------------------------------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------------------------------
def _fixture_class(model_id: str) -> str:
    from vlmspec.hub.recipe import PackError, family_folder

    try:
        return family_folder(model_id).fixture_class
    except PackError:
        return "NO-DATA"


def cmd_families(args: argparse.Namespace, out: TextIO) -> int:
    from .registry import load_impl_findings, load_registry

    rows = []
    for spec in load_registry().values():
        rows.append(
            {
                "model_id": spec.model_id,
                "family": spec.family,
                "fixture_class": _fixture_class(spec.model_id),
                "processor": spec.processor_class,
                "collate": spec.collate,
                "also_collate": list(getattr(spec, "also_collate", ()) or ()),
                "collate_options": [v.variant for v in spec.variants() if v.collate_kwargs],
                "checks": list(spec.checks),
                "expected_failures": [
                    {
                        "check": x.check,
                        "fixtures": list(x.fixtures),
                        "reason": x.reason,
                        "link": x.link,
                        "impl": list(x.impls),
                    }
                    for x in spec.expected_failures
                ],
            }
        )
    if args.json:
        out.write(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
        return 0
    header = ("model id", "family", "class", "processor", "collate", "checks", "xfail")
    table = [header] + [
        (
            r["model_id"],
            r["family"],
            r["fixture_class"],
            r["processor"],
            "+".join([r["collate"], *r["also_collate"], *r["collate_options"]]),
            ",".join(r["checks"]),
            str(len(r["expected_failures"]) or ""),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    out.write(f"\n{len(rows)} registered model(s); records in {ROOT / 'fixtures' / 'families'}\n")
    for name, found in load_impl_findings().items():
        out.write(
            f"findings for {name} ({found.package}): {len(found.expected_failures)} expected failure(s) "
            f"in {found.source}\n"
        )
    return 0


# --------------------------------------------------------------------------------------------------
# pack
# --------------------------------------------------------------------------------------------------
def cmd_pack(args: argparse.Namespace, out: TextIO) -> int:
    import vlmspec.hub as hub

    try:
        pack = hub.materialize(args.model, force=args.force)
    except hub.PackError as exc:
        out.write(f"vlmspec pack: {exc}\n")
        return 1
    m = pack.manifest
    source = m.get("source", {})
    out.write(f"pack        {pack.model_id}{' (rebuilt: --force)' if args.force else ''}\n")
    out.write(f"class       {pack.fixture_class}\n")
    out.write(f"source      {source.get('registry')} package {source.get('package')} version {source.get('version')}\n")
    out.write(f"            file {source.get('path')}\n")
    out.write(f"            sha256 {source.get('sha256')}\n")
    fingerprints = m.get("fingerprints") or {}
    if fingerprints:
        out.write(
            f"vocabulary  {fingerprints.get('passed')}/{fingerprints.get('pairs')} fingerprint pairs passed "
            f"({fingerprints.get('vocabulary')} vocabulary; {', '.join(fingerprints.get('files', []))})\n"
        )
    edits = m.get("edits") or {}
    if edits:
        out.write(f"edits       {json.dumps(edits, sort_keys=True)}\n")
    out.write(f"cache       {pack.cache_dir}\n")
    out.write(f"snapshot    {pack.snapshot} (revision {pack.revision})\n")
    out.write("files (sha256, verified on every load):\n")
    for name, digest in sorted(m.get("files", {}).items()):
        out.write(f"  {digest}  {name}\n")
    out.write(f"\nload with: AutoProcessor.from_pretrained({pack.model_id!r}, cache_dir={str(pack.cache_dir)!r})\n")
    return 0


def cmd_provenance(args: argparse.Namespace, out: TextIO) -> int:
    """Print (or with ``--write``, update in place) the ``| file | bytes | sha256 |`` table of a family
    folder's PROVENANCE.md. Only folders in this checkout are written; third-party data is read-only."""
    from vlmspec.hub.recipe import PackError, family_folder, provenance_table, write_provenance_table

    try:
        folder = family_folder(args.model)
    except PackError as exc:
        out.write(f"vlmspec provenance: {exc}\n")
        return 1
    root = Path(__file__).resolve().parents[1]
    for path in folder.folders:
        if not args.write:
            out.write(f"<!-- {path} -->\n{provenance_table(path)}")
        elif not path.resolve().is_relative_to(root):
            out.write(f"{path}: not written (third-party data outside this checkout)\n")
        else:
            try:
                changed = write_provenance_table(path)
            except PackError as exc:
                out.write(f"vlmspec provenance: {exc}\n")
                return 1
            out.write(f"{path / 'PROVENANCE.md'}: {'table updated' if changed else 'table already current'}\n")
    return 0


# --------------------------------------------------------------------------------------------------
# diff-template
# --------------------------------------------------------------------------------------------------
def _spec(model_id: str):
    from .registry import closest_ids, load_registry

    registry = load_registry()
    if model_id in registry:
        return registry[model_id]
    close = closest_ids(model_id)
    if len(close) == 1 and close[0].lower().startswith(model_id.lower()):
        return registry[close[0]]
    hint = f" (closest: {', '.join(close)})" if close else ""
    raise UsageProblem(f"{model_id!r} is not a registered model{hint}; see `vlmspec families`")


def _case(fixture: str):
    from .corpus import load_corpus

    corpus = {c.id: c for c in load_corpus()}
    if fixture not in corpus:
        raise UsageProblem(f"unknown fixture {fixture!r}; fixtures: {', '.join(sorted(corpus))}")
    return corpus[fixture]


def _segments(tokenizer: Any, ids: list[int], supervised: set[int], masked: set[int]) -> list[tuple[str, str]]:
    """``[(kind, text)]`` with kind in {"plain", "label", "masked"}; runs of >= 4 identical tokens
    (image placeholders) collapse to ``token×N``."""
    kinds = ["label" if i in supervised else "masked" if i in masked else "plain" for i in range(len(ids))]
    segments: list[tuple[str, str]] = []
    i = 0
    while i < len(ids):
        j = i
        while j < len(ids) and ids[j] == ids[i] and kinds[j] == kinds[i]:
            j += 1
        if j - i >= 4:
            segments.append((kinds[i], f"{tokenizer.decode([ids[i]])}\u00d7{j - i}"))
            i = j
            continue
        j = i + 1
        while j < len(ids) and kinds[j] == kinds[i] and not (j + 3 < len(ids) and len(set(ids[j : j + 4])) == 1):
            j += 1
        segments.append((kinds[i], tokenizer.decode(ids[i:j])))
        i = j
    merged: list[tuple[str, str]] = []
    for kind, text in segments:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def _paint(segments: list[tuple[str, str]], color: bool) -> str:
    parts = []
    for kind, text in segments:
        if kind == "label":
            parts.append(f"{_GREEN}{text}{_RESET}" if color else f"{OPEN}{text}{CLOSE}")
        elif kind == "masked":
            parts.append(f"{_DIM}{text}{_RESET}" if color else f"{MASK_OPEN}{text}{MASK_CLOSE}")
        else:
            parts.append(text)
    return "".join(parts)


def _use_color(choice: str, out: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never":
        return False
    return (
        bool(getattr(out, "isatty", lambda: False)())
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM") != "dumb"
    )


def cmd_diff_template(args: argparse.Namespace, out: TextIO) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from . import impl
    from .checks import IGNORE, collate_case, runs
    from .loading import fixture_class, load_processor

    try:
        impl.activate(args.impl)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    spec = _spec(args.model)
    case = _case(args.fixture)
    c = collate_case(spec, case)
    tok = load_processor(spec.model_id).tokenizer
    supervised = set(c.supervised)
    # attention_mask is shifted like input_ids (position t of the batch = position t of full_ids)
    mask = c.batch["attention_mask"][0].tolist()
    masked = {t for t, v in enumerate(mask) if v == 0}
    color = _use_color(args.color, out)
    bold = (lambda s: f"{_BOLD}{s}{_RESET}") if color else (lambda s: s)
    legend = (
        f"{_GREEN}green{_RESET} = supervised, {_DIM}dim{_RESET} = attention_mask 0"
        if color
        else f"{OPEN}…{CLOSE} = supervised, {MASK_OPEN}…{MASK_CLOSE} = attention_mask 0"
    )
    out.write(
        bold(
            f"{spec.model_id} · {fixture_class(spec)} · collate {spec.collate} · fixture {case.id}"
            f" · implementation {impl.active()}"
        )
        + "\n"
    )
    if case.description:
        out.write(f"{case.description}\n")
    out.write("\n" + bold("rendered template") + "\n")
    out.write(c.rendered if c.rendered.endswith("\n") else c.rendered + "\n")
    out.write("\n" + bold(f"labels ({legend}; {len(c.full_ids)} tokens)") + "\n")
    painted = _paint(_segments(tok, c.full_ids, supervised, masked), color)
    out.write(painted if painted.endswith("\n") else painted + "\n")
    out.write("\n" + bold("supervised spans (token positions in the processor's ids)") + "\n")
    spans = runs(sorted(supervised))
    if not spans:
        out.write("  (none: this sample trains on nothing)\n")
    for a, b in spans:
        out.write(f"  {a}-{b}: {tok.decode(c.full_ids[a : b + 1])!r}\n")
    n_label = int((c.batch["labels"] != IGNORE).sum())
    out.write(f"\n{n_label} supervised label(s); labels are shifted (labels[t] is the target of input_ids[t]).\n")
    return 0


# --------------------------------------------------------------------------------------------------
# goldens
# --------------------------------------------------------------------------------------------------
def cmd_goldens(args: argparse.Namespace, out: TextIO) -> int:
    from . import golden

    folders = sorted(p.name for p in golden.GOLDEN_DIR.iterdir() if p.is_dir())
    if args.model:
        want = args.model.replace("/", "--")
        if want not in folders:
            raise UsageProblem(f"no golden folder golden/{want}/ (folders: {', '.join(folders)})")
        folders = [want]
    out.write(
        f"pinned line: transformers {golden.pinned_line()} (base goldens); "
        f"this environment: transformers {golden.running_version()}\n"
    )
    for folder in folders:
        base = len(list((golden.GOLDEN_DIR / folder).glob("*.json")))
        overlays = [
            f"{line} ({len(list(golden.overlay_dir(folder, line).glob('*.json')))})"
            for line in golden.overlay_lines(folder)
        ]
        out.write(f"{folder}: {base} golden(s); overlays: {', '.join(overlays) or 'none'}\n")
        out.write(f"  compared with: {golden.describe(folder)}\n")
    return 0


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmspec", description="vlmspec conformance tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("report", help="render the last conformance report as Markdown")
    p.add_argument("--dir", help="report directory (default: ./reports, else the checkout's reports/)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("families", help="list the family registry")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_families)

    p = sub.add_parser("pack", help="materialize a model's offline pack and print its provenance")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--force", action="store_true", help="rebuild even if a verified pack exists")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("provenance", help="sha256 file table for a family folder's PROVENANCE.md")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--write", action="store_true", help="update the table in PROVENANCE.md in place")
    p.set_defaults(func=cmd_provenance)

    p = sub.add_parser("diff-template", help="rendered template and labeled spans for one fixture")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--fixture", default="multi_turn_text", metavar="ID", help="fixture id (default: multi_turn_text)")
    p.add_argument("--impl", default="vlmspec", metavar="NAME", help="implementation (as pytest --impl)")
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="ANSI color (auto: when stdout is a terminal); otherwise ⟦…⟧ markers",
    )
    p.set_defaults(func=cmd_diff_template)

    p = sub.add_parser("goldens", help="golden folders, transformers lines and overlays")
    p.add_argument("model", nargs="?", metavar="MODEL")
    p.set_defaults(func=cmd_goldens)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, out)
    except UsageProblem as exc:
        print(f"vlmspec {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
