"""The base of every endpoint under `/organizations/{orgId}/`: the organization is resolved and the caller authorized
once per request, before the handler runs (Sentry's organization endpoint base)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.models import User
from rest_framework.request import Request
from rest_framework.views import APIView

from organizations.authentication import authenticated_user
from organizations.models import Organization
from organizations.selectors import organization_get_for_admin, organization_get_for_member


class OrganizationApi(APIView):
    """Sets `organization`, `user` and `is_admin` for the handler.

    Only the organization's admins may call it, unless `member_access` (any member; `is_admin` says which). An
    organization that does not exist and one the caller may not use look alike: 404. A method the endpoint does not
    offer is a 405 for anyone who authenticates.
    """

    member_access: ClassVar[bool] = False
    organization: Organization
    user: User
    is_admin: bool

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttles
        method = (request.method or "").lower()
        if method == "options" or not hasattr(self, method):
            return
        self.user = authenticated_user(request)
        if self.member_access:
            self.organization, self.is_admin = organization_get_for_member(
                user=self.user, organization_id=kwargs["org_id"]
            )
        else:
            self.organization = organization_get_for_admin(user=self.user, organization_id=kwargs["org_id"])
            self.is_admin = True
