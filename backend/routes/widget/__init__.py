"""The widget's API, `/api/widget/*` (docs/ARCHITECTURE.md §3): every route is authenticated by
`kommo.widget_auth.widget_endpoint` and scoped to the account of the verified token."""

from backend.routes.widget import (
    account,
    activity,
    backfill,
    contacts,
    email_platform,
    mapping,
    usage,
)

routes = [*account.routes, *email_platform.routes, *mapping.routes, *activity.routes,
          *contacts.routes, *usage.routes, *backfill.routes]
