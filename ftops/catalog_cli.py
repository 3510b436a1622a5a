"""`ftops catalog import` and `ftops catalog show`: the GPU instance catalogue from the command line.

import converts a price list in SkyPilot's catalogue layout into the ftops format and stores it in
the catalogue folder (FTOPS_CATALOG, default .ftops/catalog), where every ftops reader of the
catalogue (`combined_catalog`) finds it. show prints the combined catalogue: bundled snapshot,
imported files, ftops.yaml rows and prices.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ftops.json_output import json_value

IMPORT_HELP = "convert a SkyPilot-format price list (CSV) into the catalogue folder"
SHOW_HELP = "the combined catalogue: bundled, imported, ftops.yaml rows and prices"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def cmd_catalog_import(args: argparse.Namespace) -> int:
    from ftops.optimize.catalog import CatalogError, read_skypilot_csv, write_catalog

    source = Path(args.path)
    try:
        folder = Path(args.folder) if args.folder else Path(_settings().catalog)
        frame = read_skypilot_csv(source, args.cloud, price_date=args.price_date)
        if frame.empty:
            skipped = frame.attrs.get("skipped_accelerators", {})
            raise CatalogError(
                f"{source}: no GPU instance with an on-demand price and a known GPU model"
                + (f" (skipped: {', '.join(f'{k} {v}' for k, v in skipped.items())})" if skipped else ""))
        target = folder / f"{frame['cloud'].iloc[0]}-{source.stem}.csv"
        write_catalog(frame, target, comments=[f"imported by `ftops catalog import` from {source.name}"])
    except (CatalogError, OSError) as exc:
        print(f"ftops catalog import: {_one_line(exc)}", file=sys.stderr)
        return 2
    print(f"imported {len(frame)} rows ({frame['cloud'].iloc[0]}) from {source} into {target}")
    for model, count in frame.groupby("gpu_model").size().items():
        print(f"  {model}: {count}")
    skipped = frame.attrs.get("skipped_accelerators", {})
    if skipped:
        print("  skipped (no datasheet or a fractional GPU): "
              + ", ".join(f"{name} {count}" for name, count in skipped.items()))
    return 0


def _settings():
    from ftops.definitions import settings_from_env  # lazily: it imports Dagster

    return settings_from_env()


def cmd_catalog_show(args: argparse.Namespace) -> int:
    from ftops.optimize.catalog import CatalogError, combined_catalog
    from ftops.optimize.gpus import canonical_gpu_model
    from ftops.policy import PolicyError, load_policy

    try:
        settings = _settings()
        folder = args.folder or settings.catalog
        catalog = combined_catalog(load_policy(settings.config), folder)
    except (CatalogError, PolicyError, OSError) as exc:
        print(f"ftops catalog show: {_one_line(exc)}", file=sys.stderr)
        return 2
    if args.gpu:
        model = canonical_gpu_model(args.gpu) or args.gpu
        catalog = catalog[catalog["gpu_model"].str.lower().eq(model.lower()).fillna(False).astype(bool)]
    if args.cloud:
        catalog = catalog[catalog["cloud"].eq(args.cloud.strip().lower()).fillna(False).astype(bool)]
    catalog = catalog.sort_values(["gpu_model", "gpu_count", "on_demand_usd_per_hour", "cloud", "region"],
                                  kind="stable")
    if args.json:
        records = [{k: json_value(v) for k, v in row.items()}
                   for row in catalog.astype(object).to_dict(orient="records")]
        print(json.dumps(records, indent=2, allow_nan=False))
        return 0
    if catalog.empty:
        print("no catalogue rows match")
        return 0
    from tabulate import tabulate

    def money(value) -> str:
        return "-" if value is None or value != value else f"{value:,.4f}"

    table = [[r.cloud, r.region, r.instance_type, r.gpu_model, r.gpu_count, f"{r.gpu_memory_gb:g}",
              money(r.on_demand_usd_per_hour), money(r.spot_usd_per_hour), r.source]
             for r in catalog.itertuples(index=False)]  # printing: one line per row is the output
    print(tabulate(table, headers=["cloud", "region", "instance type", "GPU", "GPUs", "GB/GPU",
                                   "on-demand USD/h", "spot USD/h", "source"], disable_numparse=True))
    print(f"{len(catalog)} rows")
    return 0


def add_catalog_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`ftops catalog import|show` under the `ftops` command's subparsers."""
    catalog = sub.add_parser("catalog", help="the GPU instance catalogue (prices, GPUs per instance)",
                             description=__doc__.splitlines()[0])
    actions = catalog.add_subparsers(dest="catalog_command", required=True)

    imp = actions.add_parser("import", help=IMPORT_HELP, description=IMPORT_HELP + ". Writes "
                             "<folder>/<cloud>-<file stem>.csv in the ftops format.")
    imp.add_argument("path", help="a SkyPilot-format CSV (InstanceType, AcceleratorName, AcceleratorCount, "
                     "vCPUs, MemoryGiB, Price, SpotPrice, Region[, AvailabilityZone])")
    imp.add_argument("--cloud", help="aws, gcp, azure, ... (default: the one named in the file name)")
    imp.add_argument("--folder", help="catalogue folder (default: FTOPS_CATALOG or .ftops/catalog)")
    imp.add_argument("--price-date", help="date of the prices, like 2026-12-02 (default: today, UTC)")
    imp.set_defaults(func=cmd_catalog_import)

    show = actions.add_parser("show", help=SHOW_HELP, description=SHOW_HELP + ".")
    show.add_argument("--gpu", help="only this GPU model (H100, A100-80GB, 'NVIDIA A100-SXM4-80GB', ...)")
    show.add_argument("--cloud", help="only this cloud (aws, gcp, azure, ...)")
    show.add_argument("--folder", help="catalogue folder (default: FTOPS_CATALOG or .ftops/catalog)")
    show.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    show.set_defaults(func=cmd_catalog_show)
    return catalog
