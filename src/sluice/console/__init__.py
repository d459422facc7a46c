"""The admin console's browser files (`static/`), served at `/ui` by `sluice.http.console`."""
