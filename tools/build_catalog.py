"""Regenerate ftops/data/instance_catalog.csv from a folder of SkyPilot-format price lists.

    python tools/build_catalog.py FOLDER [--price-date 2026-12-02] [--out ftops/data/instance_catalog.csv]

FOLDER holds the files of the shared real-data set's prices/ folder: aws_gpu_p_family_subset.csv and
aws_gpu_g_family_subset.csv (skypilot-org/skypilot-catalog, Apache-2.0), gcp_gpu_rows.csv and
azure_gpu_rows.csv (anycloud-sh/catalog). Other files (lambda) are ignored. The conversion is the one
`ftops catalog import` runs (ftops.optimize.catalog.read_skypilot_csv), so the bundled snapshot and an
imported catalogue never disagree on what a row means. Update ftops/data/README.md with the date.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import pandas as pd

from ftops.optimize.catalog import CatalogError, read_skypilot_csv, write_catalog

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "ftops" / "data" / "instance_catalog.csv"

AWS_SOURCE = "skypilot-org/skypilot-catalog catalogs/v8/aws/vms.csv (Apache-2.0)"
# (file, cloud, source column); the order is the order of precedence should two files share a key
INPUTS = (
    ("aws_gpu_p_family_subset.csv", "aws", AWS_SOURCE),
    ("aws_gpu_g_family_subset.csv", "aws", AWS_SOURCE),
    ("gcp_gpu_rows.csv", "gcp", "anycloud-sh/catalog gcp list prices"),
    ("azure_gpu_rows.csv", "azure", "anycloud-sh/catalog azure list prices"),
)


def header_comments(price_date: str) -> list[str]:
    return [
        f"sources (price_date {price_date}): AWS: skypilot-org/skypilot-catalog catalogs/v8/aws/vms.csv "
        "(Apache-2.0) - Contains data from skypilot-org/skypilot-catalog (Apache-2.0);",
        "GCP, Azure: list prices from anycloud-sh/catalog, a daily mirror of the providers' public price lists "
        "in SkyPilot's format; only the columns ftops needs are kept.",
        "One row per (cloud, region, instance_type, gpu_model, gpu_count); prices in USD per instance-hour; "
        "gpu_memory_gb per GPU.",
        "Zones: per-zone source rows are collapsed to their region. on_demand is the same in every zone; "
        "spot_usd_per_hour is the lowest zone's spot price among the zones with an on-demand offer "
        "(the price a launcher free to pick the zone pays). Empty spot = no spot offer in that region.",
        "GCP: price = host VM row + GPU row of the same zone (GCP bills them apart). T4/V100 on N1 hosts "
        "are listed on a representative n1-highmem host (8 vCPUs per GPU) when the source lists N1 hosts; "
        "this snapshot's source has none, so GCP T4/V100 are absent. a3-megagpu-8g (SkyPilot: H100-MEGA) is "
        "gpu_model H100.",
        "Regenerate with tools/build_catalog.py; see ftops/data/README.md.",
    ]


def build(folder: Path, price_date: str) -> pd.DataFrame:
    frames = []
    for name, cloud, source in INPUTS:
        path = folder / name
        if not path.exists():
            raise CatalogError(f"{path}: not found; the folder must hold {', '.join(n for n, _, _ in INPUTS)}")
        frame = read_skypilot_csv(path, cloud, source=source, price_date=price_date)
        skipped = frame.attrs.get("skipped_accelerators", {})
        print(f"{name}: {len(frame)} rows"
              + (f" (skipped: {', '.join(f'{k} {v}' for k, v in skipped.items())})" if skipped else ""))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder of SkyPilot-format CSV files (realdata prices/ layout)")
    parser.add_argument("--price-date", default=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
                        help="date of the price snapshot (default: today, UTC)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="catalogue to write")
    args = parser.parse_args(argv)
    try:
        catalog = build(args.folder, args.price_date)
        write_catalog(catalog, args.out, comments=header_comments(args.price_date))
    except CatalogError as exc:
        print(f"build_catalog: {exc}", file=sys.stderr)
        return 2
    per_cloud = catalog.groupby(["cloud", "gpu_model"]).size().unstack(fill_value=0)
    print(per_cloud.to_string())
    print(f"wrote {len(catalog)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
