"""Build the toolkit's wheels (django-shardrouter, django-shardmove) into a folder (default: dist/).

Each distribution's metadata lives in packaging/<package>/ (pyproject.toml and
README.md); the package itself is the folder of the same name at the top of the
repository. The build copies both into a private folder, so nothing else of the
repository can end up in a wheel.

    python scripts/build_dists.py [--out dist]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shardrouter", "migrations_tooling")


def build(package: str, out: Path) -> Path:
    """Build one wheel into ``out`` and return its path."""
    with tempfile.TemporaryDirectory(prefix=f"build-{package}-") as tmp:
        source = Path(tmp)
        for item in (REPO_ROOT / "packaging" / package).iterdir():
            shutil.copy2(item, source / item.name)
        shutil.copytree(REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        before = set(out.glob("*.whl"))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), tmp],
            check=True,
        )
        built = sorted(set(out.glob("*.whl")) - before)
        if not built:
            raise SystemExit(f"pip built no new wheel for {package} in {out}; remove the old one and re-run.")
        return built[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist", help="folder for the wheels (created)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("django_shard*.whl"):
        old.unlink()
    for package in PACKAGES:
        print(build(package, args.out.resolve()))


if __name__ == "__main__":
    main()
