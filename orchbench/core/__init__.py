"""The core: spec, arms, platforms, load tools, analysis, report. Imports only results_schema and serving."""
