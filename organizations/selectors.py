from __future__ import annotations

import uuid

from django.contrib.auth.models import User

from core.errors import NotFound
from organizations.models import Membership, Organization


def organization_get_for_admin(*, user: User, organization_id: str) -> Organization:
    """The organization if `user` is one of its admins; a missing org and a non-admin look alike (404)."""
    try:
        org_uuid = uuid.UUID(organization_id)
    except ValueError:
        raise NotFound("Organization not found.") from None
    organization = Organization.objects.filter(
        pk=org_uuid, memberships__user=user, memberships__role=Membership.Role.ADMIN
    ).first()
    if organization is None:
        raise NotFound("Organization not found.")
    return organization


def organization_get_for_member(*, user: User, organization_id: str) -> tuple[Organization, bool]:
    """The organization and whether `user` is one of its admins, if `user` is a member at all (else 404)."""
    try:
        org_uuid = uuid.UUID(organization_id)
    except ValueError:
        raise NotFound("Organization not found.") from None
    membership = Membership.objects.select_related("organization").filter(organization_id=org_uuid, user=user).first()
    if membership is None:
        raise NotFound("Organization not found.")
    return membership.organization, membership.role == Membership.Role.ADMIN
