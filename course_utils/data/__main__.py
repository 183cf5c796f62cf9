"""Command line for the course's data.

    python -m course_utils.data download {cifar10,stl10} [--root DIR]
    python -m course_utils.data make [--root DIR]

``download`` fetches a real dataset (needs the network, once); ``make`` builds
the bundled synthetic caches so that the notebooks start at once.
"""
from __future__ import annotations

import argparse
from pathlib import Path

# The same as torchvision_sets.DATASETS, written out so that `--help` and argument
# errors answer at once, without importing torch (imports are in the commands).
DATASETS = ("cifar10", "stl10")


def make(root: str | Path | None = None) -> None:
    """Build (or read) the synthetic image and video caches, and say where they are."""
    from . import bundled

    for split in ("train", "test"):
        x, y = bundled.load_synthetic(split, root=root)
        print(f"synthetic images {split}: images {tuple(x.shape)} labels {tuple(y.shape)}")
    for split in ("train", "test"):
        x, y = bundled.load_synthetic_videos(split, root=root)
        print(f"synthetic videos {split}: videos {tuple(x.shape)} labels {tuple(y.shape)}")
    cache = Path(root or bundled.data_root()) / "cache"
    print(f"caches in {cache}:")
    for path in sorted(cache.glob("synth-*.npz")):
        print(f"  {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course_utils.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    dl = commands.add_parser("download", help="download a real dataset into <root>/<name>/")
    dl.add_argument("name", choices=DATASETS)
    dl.add_argument("--root", default=None, help="data folder (default: $SSL_KIT_DATA or the repo's data/)")
    mk = commands.add_parser("make", help="build the bundled synthetic dataset's caches")
    mk.add_argument("--root", default=None, help="data folder (default: $SSL_KIT_DATA or the repo's data/)")
    args = parser.parse_args(argv)
    if args.command == "download":
        from .torchvision_sets import download

        download(args.name, args.root)
    else:
        make(args.root)


if __name__ == "__main__":
    main()
