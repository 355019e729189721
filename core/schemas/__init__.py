"""JSON Schemas of the IEA Wind Task 43 WRA data model, versions 1.0, 1.2 and 1.3 (see NOTICE.md)."""
