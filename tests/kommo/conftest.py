from tests.kommo.fixtures import kommo, kommo_app, kommo_services, kommo_settings, outbound, web

__all__ = ["kommo", "kommo_app", "kommo_services", "kommo_settings", "outbound", "web"]
