"""Road-safety analytics: historical crash records imported from CSV, and a hotspot analysis that
joins them with the appliance's own incidents per grid cell or road segment (GeoJSON for a map).

    report = import_csv(data, source="polda-2024.csv", store=store)
    fc = hotspots(store, since=..., until=..., cell="grid", cell_m=250)

docs/roadsafety.md describes the CSV format, the risk score, the trend and the GeoJSON.
"""

from smartcity.roadsafety.hotspots import (
    CRASH_WEIGHTS,
    INCIDENT_WEIGHTS,
    Weights,
    grid_cell,
    grid_cell_polygon,
    hotspots,
)
from smartcity.roadsafety.importer import (
    COLUMNS,
    MAX_BYTES,
    MAX_ROWS,
    SEVERITY_SPELLINGS,
    ImportReport,
    ParsedCsv,
    describe_columns,
    import_csv,
    parse_csv,
)

__all__ = [
    "COLUMNS",
    "CRASH_WEIGHTS",
    "INCIDENT_WEIGHTS",
    "MAX_BYTES",
    "MAX_ROWS",
    "SEVERITY_SPELLINGS",
    "ImportReport",
    "ParsedCsv",
    "Weights",
    "describe_columns",
    "grid_cell",
    "grid_cell_polygon",
    "hotspots",
    "import_csv",
    "parse_csv",
]
