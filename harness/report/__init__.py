"""Reports: report.json (schema in docs/report.md) and the terminal table."""
