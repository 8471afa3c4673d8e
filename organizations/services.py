from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import NotFound, ValidationError
from organizations.keys import generate_key
from organizations.models import (
    GROUP_DESCRIPTION_MAX,
    GROUP_NAME_MAX,
    TRIAL_DAYS,
    ApiKey,
    Group,
    GroupMembership,
    Membership,
    Organization,
)


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    plaintext: str  # shown once, never stored


def organization_create(*, name: str) -> Organization:
    return Organization.objects.create(name=name)


def membership_set(*, user: User, organization: Organization, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(user=user, organization=organization, defaults={"role": role})
    return membership


def api_key_create(*, user: User, name: str = "") -> CreatedApiKey:
    key = generate_key()
    api_key = ApiKey.objects.create(user=user, name=name, prefix=key.prefix, hashed_key=key.hashed)
    return CreatedApiKey(api_key=api_key, plaintext=key.plaintext)


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_touch(*, api_key: ApiKey, min_interval: timedelta = timedelta(minutes=1)) -> None:
    """Record use, at most once a minute per key: a write on every request would cost more than it tells."""
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= min_interval:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


def organization_start_trial(*, organization_id: uuid.UUID) -> bool:
    """Start the 14-day trial if the organization never had one. True when this call started it.

    A conditional UPDATE, so of two concurrent first creates exactly one starts the trial.
    """
    now = timezone.now()
    started = Organization.objects.filter(pk=organization_id, trial_started_at__isnull=True).update(
        trial_started_at=now, trial_ends_at=now + timedelta(days=TRIAL_DAYS)
    )
    return started == 1


@dataclass(frozen=True)
class AdminLogin:
    organization: Organization
    user: User
    password: str  # generated, shown once; only its hash is stored


def _organization_named(name: str) -> Organization:
    """The oldest organization with this name, created when there is none."""
    organization = Organization.objects.filter(name=name).order_by("id").first()
    return organization if organization is not None else organization_create(name=name)


def _user_with_email(email: str) -> User:
    user, created = get_user_model().objects.get_or_create(username=email, defaults={"email": email})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


@transaction.atomic
def organization_admin_login_create(*, email: str, organization_name: str) -> AdminLogin:
    """Give a person the admin for an organization: an ADMIN membership, staff status (Django's admin lets in
    staff users only; what they see there is decided by their memberships) and a new generated password.

    Running it again for the same person issues a new password: the way to hand out a lost one.
    """
    user = _user_with_email(email)
    organization = _organization_named(organization_name)
    membership_set(user=user, organization=organization, role=Membership.Role.ADMIN)
    password = secrets.token_urlsafe(12)
    user.set_password(password)
    user.is_staff = True
    user.is_active = True
    user.save(update_fields=["password", "is_staff", "is_active"])
    return AdminLogin(organization=organization, user=user, password=password)


@transaction.atomic
def demo_access_ensure(*, email: str, organization_name: str, role: str) -> tuple[Organization, CreatedApiKey]:
    """User, organization and membership as needed, and a fresh API key (the create_api_key command)."""
    user = _user_with_email(email)
    organization = _organization_named(organization_name)
    membership_set(user=user, organization=organization, role=role)
    return organization, api_key_create(user=user, name="create_api_key")


# --- Groups ---------------------------------------------------------------------------------------------------------


def _group_name(name: str) -> str:
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= GROUP_NAME_MAX:
        raise ValidationError("name", f"must be 1 to {GROUP_NAME_MAX} characters (after trimming).")
    if any(not character.isprintable() for character in cleaned):
        raise ValidationError("name", "must not contain control characters.")
    return cleaned


def _group_description(description: str) -> str:
    if len(description) > GROUP_DESCRIPTION_MAX:
        raise ValidationError("description", f"must be at most {GROUP_DESCRIPTION_MAX} characters.")
    # NUL, which PostgreSQL cannot store, and lone surrogates (JSON's "\ud800"), which no database can.
    if "\x00" in description or any(0xD800 <= ord(character) <= 0xDFFF for character in description):
        raise ValidationError("description", "must be text without NUL characters or lone surrogates.")
    return description


_NAME_TAKEN = "is already the name of another group in this organization."


def group_check(*, organization_id: uuid.UUID, name: str, description: str, group_id: uuid.UUID | None = None) -> None:
    """What a create or an update would refuse, as the ValidationError it would raise (the admin's form asks first,
    to show it on its field)."""
    cleaned = _group_name(name)
    _group_description(description)
    taken = Group.objects.filter(organization_id=organization_id, name__iexact=cleaned)
    if group_id is not None:
        taken = taken.exclude(pk=group_id)
    if taken.exists():
        raise ValidationError("name", _NAME_TAKEN)


def _save_group(group: Group, **save: Any) -> Group:
    """Save, telling a name another group has (case-insensitively) apart: a check first, the constraint for a race."""
    group_check(
        organization_id=group.organization_id, name=group.name, description=group.description, group_id=group.pk
    )
    try:
        with transaction.atomic():
            group.save(**save)
    except IntegrityError:
        raise ValidationError("name", _NAME_TAKEN) from None
    return group


def group_create(*, organization: Organization, name: str, description: str = "") -> Group:
    group = Group(organization=organization, name=_group_name(name), description=_group_description(description))
    return _save_group(group, force_insert=True)


def group_update(*, group: Group, name: str | None = None, description: str | None = None) -> Group:
    fields = []
    if name is not None:
        group.name = _group_name(name)
        fields.append("name")
    if description is not None:
        group.description = _group_description(description)
        fields.append("description")
    if not fields:
        return group
    return _save_group(group, update_fields=[*fields, "updated_at"])


def group_delete(*, group: Group) -> None:
    """The group, its memberships and the servers granted to it (the grants, not the servers) go at once: its
    members' next catalog read or call no longer counts it."""
    group.delete()


def group_member_add(*, group: Group, user_id: int) -> GroupMembership:
    """Put a member of the group's organization in the group (idempotent); anyone else is a ValidationError."""
    membership = Membership.objects.filter(organization_id=group.organization_id, user_id=user_id).first()
    if membership is None:
        raise ValidationError("userId", "is not a member of this organization.")
    group_membership, _ = GroupMembership.objects.get_or_create(group=group, membership=membership)
    return group_membership


def group_member_remove(*, group: Group, user_id: int) -> None:
    if not GroupMembership.objects.filter(group=group, membership__user_id=user_id).delete()[0]:
        raise NotFound("No such group member.")
