"""`smartcity api`: the command-center API (Litestar), docs/api.md.

from smartcity.api import ApiSettings, create_app
app = create_app(ApiSettings(data_dir="/var/lib/smartcity"))
"""

from smartcity.api.app import create_app
from smartcity.api.settings import ApiSettings, ApiSettingsError

__all__ = ["ApiSettings", "ApiSettingsError", "create_app"]
