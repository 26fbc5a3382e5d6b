"""The three PATCH flavours of the Kubernetes API: JSON patch, merge patch, strategic merge.

Strategic merge patch follows k8s.io/apimachinery/pkg/util/strategicpatch (patch.go) with the
options the apiserver uses (merge the parallel deletion lists, drop unmatched nulls), because
that is what `kubectl apply` (client-side), `label`, `annotate`, `scale`, `set image` and
`rollout` compute their patches for. Per field, the schema (apiserver.openapi, generated from
the upstream definitions) decides how a list is merged:
- `x-kubernetes-patch-strategy: merge` with `x-kubernetes-patch-merge-key`: items are merged
  by key (containers by name, ports by containerPort, ...);
- `merge` without a key on a list of scalars: the lists are unioned (finalizers);
- anything else: the patch's list replaces the original.
Directives: `$patch: replace|delete` in maps, `$patch: delete|replace` as list items,
`$setElementOrder/<list>`, `$retainKeys`, `$deleteFromPrimitiveList/<list>`.
Kinds without a schema get merge-patch semantics.

Invariant: the inputs are never mutated; every function returns a new dict. Errors are
PatchError with a sentence the handler can put into a 4xx Status.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

from apiserver.openapi.schema import definition_for, field_schema, resolve

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER_PREFIX = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST_PREFIX = "$deleteFromPrimitiveList/"


class PatchError(ValueError):
    """A patch that cannot be applied: malformed, or failing one of its own tests."""


# --- RFC 6902 JSON patch ----------------------------------------------------------------------


def apply_json_patch(obj: dict, patch: Any) -> dict:
    if not isinstance(patch, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        result = jsonpatch.JsonPatch(patch).apply(obj, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
        raise PatchError(f"the JSON patch could not be applied: {error}") from error
    except (TypeError, KeyError, AttributeError) as error:
        raise PatchError(f"the JSON patch is malformed: {error}") from error
    if not isinstance(result, dict):
        raise PatchError("the JSON patch must leave an object, not replace it")
    return result


# --- RFC 7386 JSON merge patch ----------------------------------------------------------------


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def apply_merge_patch(obj: dict, patch: Any) -> dict:
    if not isinstance(patch, Mapping):
        raise PatchError("a merge patch must be a JSON object")
    return _merge(copy.deepcopy(obj), patch)


# --- strategic merge patch --------------------------------------------------------------------


def apply_strategic_merge_patch(obj: dict, patch: Any, *, api_version: str, kind: str) -> dict:
    if not isinstance(patch, Mapping):
        raise PatchError("a strategic merge patch must be a JSON object")
    schema = definition_for(api_version, kind)
    if schema is None:
        return apply_merge_patch(obj, patch)
    return _merge_map(copy.deepcopy(obj), copy.deepcopy(dict(patch)), schema)


def _strategy(field: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """(list/map strategy without retainKeys, merge key) of one field."""
    if not field:
        return "", None
    strategies = [s for s in field.get("x-kubernetes-patch-strategy", "").split(",") if s]
    others = [s for s in strategies if s != "retainKeys"]
    return (others[0] if others else ""), field.get("x-kubernetes-patch-merge-key")


def _element_schema(field: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return resolve(field.get("items")) if field and field.get("items") else None


def _merge_map(original: dict, patch: dict, schema: Mapping | None) -> dict:
    """Merge `patch` into `original` (both owned by the caller, mutated freely)."""
    if DIRECTIVE in patch:
        directive = patch.pop(DIRECTIVE)
        if directive == "replace":
            return _strip_directives(patch)
        if directive == "delete":
            return {}
        raise PatchError(f'unknown patch directive "{DIRECTIVE}: {directive}" in a map')
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, schema)
    deletions = {
        key[len(DELETE_FROM_PRIMITIVE_LIST_PREFIX) :]: patch.pop(key)
        for key in [k for k in patch if k.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX)]
    }
    for key, patch_value in patch.items():
        if patch_value is None:
            original.pop(key, None)
        elif key not in original:
            original[key] = _strip_directives(patch_value)
        else:
            original[key] = _merge_value(original[key], patch_value, field_schema(schema, key))
    # Deletions from primitive lists come last, after any additions to the same list.
    for key, removed in deletions.items():
        if isinstance(original.get(key), list) and isinstance(removed, list):
            original[key] = [item for item in original[key] if item not in removed]
    return original


def _merge_value(original_value: Any, patch_value: Any, field: Mapping | None) -> Any:
    strategy, merge_key = _strategy(field)
    if isinstance(original_value, dict) and isinstance(patch_value, dict):
        if strategy == "replace":
            return _strip_directives(patch_value)
        return _merge_map(original_value, patch_value, resolve(field))
    if isinstance(original_value, list) and isinstance(patch_value, list):
        if strategy == "merge":
            return _merge_list(original_value, patch_value, merge_key, _element_schema(field))
        return _strip_directives(patch_value)
    return _strip_directives(patch_value)


def _strip_directives(value: Any) -> Any:
    """A value new to the object keeps no directives (`$patch`, `$setElementOrder/...`)."""
    if isinstance(value, dict):
        if value.get(DIRECTIVE) == "delete":
            return {}
        return {
            key: _strip_directives(item)
            for key, item in value.items()
            if not key.startswith("$") and item is not None
        }
    if isinstance(value, list):
        return [
            _strip_directives(item)
            for item in value
            if not (
                isinstance(item, dict)
                and (item.get(DIRECTIVE) == "delete" or set(item) == {DIRECTIVE})
            )
        ]
    return value


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if RETAIN_KEYS not in patch:
        return
    retained = patch.pop(RETAIN_KEYS)
    if not isinstance(retained, list):
        raise PatchError(f"{RETAIN_KEYS} must be a list of field names")
    for key, value in patch.items():
        if value is None or key.startswith("$"):
            continue
        if key not in retained:
            raise PatchError(f'field "{key}" is in the patch but not in its {RETAIN_KEYS} list')
    for key in list(original):
        if key not in retained:
            del original[key]


def _merge_ordered_lists(original: dict, patch: dict, schema: Mapping | None) -> None:
    """Handle every `$setElementOrder/<list>`: merge that list and put it in the given order."""
    for directive_key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER_PREFIX)]:
        order = patch.pop(directive_key)
        key = directive_key[len(SET_ELEMENT_ORDER_PREFIX) :]
        if not isinstance(order, list):
            raise PatchError(f"{directive_key} must be a list")
        field = field_schema(schema, key)
        strategy, merge_key = _strategy(field)
        original_list = original.get(key)
        patch_list = patch.pop(key, None)
        if original_list is None and patch_list is None:
            continue
        if original_list is not None and not isinstance(original_list, list):
            raise PatchError(f'field "{key}" is not a list in the object')
        if patch_list is not None and not isinstance(patch_list, list):
            raise PatchError(f'field "{key}" must be a list in the patch')
        if original_list is None:
            merged = _strip_directives(patch_list)
        elif patch_list is None:
            merged = original_list
        elif strategy == "merge":
            merged = _merge_list(original_list, patch_list, merge_key, _element_schema(field))
        else:
            merged = patch_list
        in_order = [item for item in merged if _index(order, item, merge_key) >= 0]
        server_only = [item for item in merged if _index(order, item, merge_key) < 0]
        original[key] = _normalize_order(
            in_order, server_only, order, original_list or [], merge_key
        )


def _merge_list(
    original: list, patch: list, merge_key: str | None, element_schema: Mapping | None
) -> list:
    if not original and not patch:
        return original
    if not any(isinstance(item, dict) for item in (*original, *patch)):
        merged = list(original)
        merged.extend(item for item in patch if item not in original)
        in_patch = [item for item in merged if item in patch]
        server_only = [item for item in merged if item not in patch]
        return _normalize_order(in_patch, server_only, patch, original, None)
    if not merge_key:
        raise PatchError("cannot merge a list of objects that has no merge key")
    original, patch = _apply_list_directives(original, patch, merge_key)
    merged = list(original)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(f'list item {item!r} does not contain the merge key "{merge_key}"')
        position = _index(merged, item, merge_key)
        if position >= 0:
            merged[position] = _merge_map(merged[position], item, element_schema)
        else:
            merged.append(_strip_directives(item))
    in_patch = [item for item in merged if _index(patch, item, merge_key) >= 0]
    server_only = [item for item in merged if _index(patch, item, merge_key) < 0]
    # `original` (after deletions, before additions) is the server's order, as upstream.
    return _normalize_order(in_patch, server_only, patch, original, merge_key)


def _apply_list_directives(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    """Items `{"$patch": "delete", key: v}` delete; `{"$patch": "replace"}` replaces the list."""
    plain_items = []
    replace = False
    for item in patch:
        if not isinstance(item, dict) or DIRECTIVE not in item:
            plain_items.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise PatchError(f'a "$patch: delete" list item needs the merge key "{merge_key}"')
            original = [o for o in original if not _same_key(o, item, merge_key)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise PatchError(f'unknown patch directive "{DIRECTIVE}: {directive}" in a list')
    if replace:
        return [_strip_directives(item) for item in plain_items], []
    return original, plain_items


def _same_key(item: Any, other: Mapping, merge_key: str) -> bool:
    return isinstance(item, dict) and merge_key in item and item[merge_key] == other[merge_key]


def _index(items: list, wanted: Any, merge_key: str | None) -> int:
    """Position of `wanted` in `items`, matched by merge key for objects; -1 when absent."""
    for position, item in enumerate(items):
        if merge_key is None:
            if item == wanted:
                return position
        elif (
            isinstance(wanted, dict) and merge_key in wanted and _same_key(item, wanted, merge_key)
        ):
            return position
    return -1


def _normalize_order(
    patch_items: list,
    server_only: list,
    patch_order: list,
    server_order: list,
    merge_key: str | None,
) -> list:
    """Patch items in the patch's order, server-only items in the server's order, interleaved
    where both are known to the server (normalizeElementOrder / mergeSortedSlice upstream)."""
    patch_items = sorted(patch_items, key=lambda item: _index(patch_order, item, merge_key))
    server_only = sorted(server_only, key=lambda item: _index(server_order, item, merge_key))
    merged: list = []
    left, right = 0, 0
    while left < len(server_only) or right < len(patch_items):
        if right >= len(patch_items):
            merged.append(server_only[left])
            left += 1
        elif left >= len(server_only):
            merged.append(patch_items[right])
            right += 1
        else:
            server_position = _index(server_order, server_only[left], merge_key)
            patch_position = _index(server_order, patch_items[right], merge_key)
            if 0 <= server_position < patch_position:
                merged.append(server_only[left])
                left += 1
            else:
                merged.append(patch_items[right])
                right += 1
    return merged
