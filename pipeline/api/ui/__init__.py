"""The web UI under /ui: server-rendered pages over the API's own state (pipeline/api/ui/pages.py)."""
