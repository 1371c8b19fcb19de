"""Regenerate the protobuf and gRPC modules from the .proto files.

Run from the repository root after editing a file under
``contentgen_service/protos``::

    python -m contentgen_service.codegen          # rewrite contentgen_service/gen
    python -m contentgen_service.codegen --check  # exit 1 if gen/ is stale

The generated modules are committed, so the service and its client need only
the protobuf and grpcio runtimes; grpcio-tools is a development dependency.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO_ROOT = PACKAGE_DIR / "protos"
GEN_DIR = PACKAGE_DIR / "gen"
GEN_PACKAGE = "contentgen_service.gen"

# protoc writes imports relative to the proto root ("from contentgen.v1 import
# ..."); rewriting them to absolute package imports lets the generated code load
# with only the repository root on sys.path.
_GENERATED_IMPORT = re.compile(r"^from (contentgen(?:\.\w+)*) import (\w+_pb2)", re.MULTILINE)

# Generated code follows protoc's style, not ours: keep linters, the
# formatter and the type checker out of it.
_LINTER_OPT_OUT = "# ruff: noqa\n# fmt: off\n# mypy: ignore-errors\n"

_INIT_TEXT = '"""Generated protobuf modules; rebuild: python -m contentgen_service.codegen."""\n'


def proto_files() -> list[Path]:
    """Return every .proto file under the proto root, in a stable order."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate_into(out_dir: Path) -> list[Path]:
    """Compile every proto into ``out_dir`` and return the files written.

    Raises RuntimeError with protoc's exit code when compilation fails (protoc
    prints the reason on stderr).
    """
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "grpcio-tools is not installed; install the development requirements "
            "(pip install -r requirements-dev.txt) to regenerate the protobuf modules"
        ) from exc
    import importlib.resources

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    sources = [str(path.relative_to(PROTO_ROOT)) for path in proto_files()]
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with exit code {status} for {', '.join(sources)}")
    written = []
    for path in sorted(out_dir.rglob("*.py*")):
        text = _GENERATED_IMPORT.sub(rf"from {GEN_PACKAGE}.\1 import \2", path.read_text())
        text = _LINTER_OPT_OUT + text
        path.write_text(text)
        written.append(path)
    for directory in sorted({p.parent for p in written}):
        while directory != out_dir.parent:
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text(_INIT_TEXT)
                written.append(init)
            directory = directory.parent
    return sorted(written)


def stale_files(current: Path, fresh: Path) -> list[str]:
    """Return a unified diff per generated file that differs between two trees."""
    diffs = []
    names = {p.relative_to(fresh) for p in fresh.rglob("*.py*")}
    names |= {p.relative_to(current) for p in current.rglob("*.py*") if "__pycache__" not in p.parts}
    for name in sorted(names):
        old = (current / name).read_text().splitlines(keepends=True) if (current / name).exists() else []
        new = (fresh / name).read_text().splitlines(keepends=True) if (fresh / name).exists() else []
        if old != new:
            diffs.append("".join(difflib.unified_diff(old, new, f"committed/{name}", f"fresh/{name}")))
    return diffs


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m contentgen_service.codegen", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare a fresh build with contentgen_service/gen and exit 1 if they differ, writing nothing",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "gen"
        generate_into(fresh)
        diffs = stale_files(GEN_DIR, fresh)
        if args.check:
            if diffs:
                sys.stderr.write("".join(diffs))
                sys.stderr.write("\ngenerated code is stale: run python -m contentgen_service.codegen\n")
                return 1
            print("generated code is up to date")
            return 0
        for path in sorted(fresh.rglob("*.py*")):
            target = GEN_DIR / path.relative_to(fresh)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
        written = len(list(fresh.rglob("*.py*")))
        print(f"wrote {written} files under {GEN_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
