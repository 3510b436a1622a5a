"""Reports people open (spec §2.3, §1.2): self-contained HTML pages with Plotly charts.

Plain Python: pages are built from the warehouse tables passed in as DataFrames; `defs/` wires
them as assets and the `ftops report` / `ftops alerts` commands read them.
"""
