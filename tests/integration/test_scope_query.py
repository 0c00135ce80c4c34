"""``load_scope`` reads memberships, subtree nodes and billing accounts in one query:
the strongest role per node, only the user's subtrees, and the entity switcher's
narrowing (``load_request_scope``) with a node that is no longer visible."""

from __future__ import annotations

from core.identity.roles import CustomerRole
from core.identity.scope import load_request_scope, load_scope
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
    create_user,
    grant_role,
)
from tests.integration.factories import SYSTEM


async def test_scope_in_one_query_matches_the_tree(db) -> None:
    entity = await create_issuing_entity(
        code="US", name="Acme", legal_name="Acme Inc.", country="US", functional_currency="USD"
    )
    root = await create_organization(name="Scope Group")
    child = await create_organization(name="Scope Child", parent_id=root)
    grandchild = await create_organization(name="Scope Grandchild", parent_id=child)
    sibling = await create_organization(name="Scope Sibling", parent_id=root)
    other = await create_organization(name="Other Group")
    accounts = {}
    for code, org in (
        ("S-ROOT", root),
        ("S-CHILD", child),
        ("S-GRAND", grandchild),
        ("S-SIB", sibling),
        ("S-OTHER", other),
    ):
        accounts[code] = await create_billing_account(
            code=code, name=code, organization_id=org, issuing_entity_id=entity, currency_code="USD"
        )
    user = await create_user(email="scope@example.com", name="Scope", organization_id=root)
    await grant_role(user, child, CustomerRole.VIEWER, SYSTEM)
    await grant_role(user, grandchild, CustomerRole.PAYER, SYSTEM)

    scope = await load_scope(user)
    assert scope.organization_ids == {child, grandchild}
    assert scope.billing_account_ids == {accounts["S-CHILD"], accounts["S-GRAND"]}
    assert scope.role_by_organization == {
        child: CustomerRole.VIEWER,
        grandchild: CustomerRole.PAYER,  # the strongest of viewer (inherited) and payer
    }
    assert scope.may(CustomerRole.PAYER, accounts["S-GRAND"])
    assert not scope.may(CustomerRole.PAYER, accounts["S-CHILD"])
    assert not scope.may(CustomerRole.VIEWER, accounts["S-SIB"])
    assert not scope.may(CustomerRole.VIEWER, accounts["S-OTHER"])

    narrowed, ok = await load_request_scope(user, grandchild)
    assert ok
    assert narrowed.billing_account_ids == {accounts["S-GRAND"]}
    assert narrowed.visible_organization_ids == {child, grandchild}

    for gone in (sibling, other, 2**31 - 1):  # never visible, or does not exist
        unchanged, ok = await load_request_scope(user, gone)
        assert not ok
        assert unchanged == scope

    nobody = await create_user(email="nobody@example.com", name="Nobody", organization_id=root)
    assert (await load_scope(nobody)).empty
