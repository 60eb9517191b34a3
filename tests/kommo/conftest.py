from tests.kommo.fixtures import kommo, kommo_app, kommo_resources, kommo_settings, outbound, web

__all__ = ["kommo", "kommo_app", "kommo_resources", "kommo_settings", "outbound", "web"]
