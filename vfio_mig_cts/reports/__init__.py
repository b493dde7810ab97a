"""Reports: the typed result record (``record.py``) and one renderer per format, none parsing another's output."""
