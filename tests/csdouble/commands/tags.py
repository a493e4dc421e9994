"""createTags / deleteTags (async) and listTags. The double tags templates only."""

from __future__ import annotations

from typing import Any

from ..errors import invalid_parameter, param_error
from ..listing import owner_scope, paged_list
from ..model import Tag, Template
from ..params import Context, keyword_match
from ..views import tag_view
from .jobs import submit
from .templates_list import check_template_access

TAGGABLE = "Template"


def _resource_type(name: str) -> str:
    if name.lower() != TAGGABLE.lower():
        raise invalid_parameter(f"Invalid resource type {name}")
    return TAGGABLE


def _templates(ctx: Context, resource_ids: list[str]) -> list[Template]:
    found = []
    for resource_id in resource_ids:
        template = ctx.state.templates.get(resource_id)
        if template is None or template.removed:
            raise invalid_parameter(f"Unable to find resource by id {resource_id} and type {TAGGABLE}")
        check_template_access(ctx.state, ctx.caller, template)
        found.append(template)
    return found


def create_tags(ctx: Context) -> dict[str, Any]:
    resource_ids = ctx.csv("resourceids", required=True) or []
    resource_type = ctx.required("resourcetype")
    tags = ctx.key_value_map("tags")
    if not tags:
        raise param_error(f"Unable to execute API command {ctx.api_name} due to missing parameter tags")
    state = ctx.state

    def run() -> dict[str, Any]:
        _resource_type(resource_type)
        for template in _templates(ctx, resource_ids):
            for key, value in tags.items():
                if any(t.resource_id == template.id and t.key == key for t in state.tags):
                    raise invalid_parameter(f"tag {key} already on resource id={template.id}")
                state.tags.append(Tag(key, value, TAGGABLE, template.id, template.owner))
        return {"success": True}

    return submit(ctx, "tag.CreateTagsCmd", None, run)


def delete_tags(ctx: Context) -> dict[str, Any]:
    resource_ids = ctx.csv("resourceids", required=True) or []
    resource_type = ctx.required("resourcetype")
    wanted = ctx.groups("tags")
    state = ctx.state

    def run() -> dict[str, Any]:
        _resource_type(resource_type)
        ids = {t.id for t in _templates(ctx, resource_ids)}

        def doomed(tag: Tag) -> bool:
            if tag.resource_id not in ids:
                return False
            return not wanted or any(
                g.get("key") == tag.key and g.get("value", tag.value) == tag.value for g in wanted
            )

        state.tags[:] = [t for t in state.tags if not doomed(t)]
        return {"success": True}

    return submit(ctx, "tag.DeleteTagsCmd", None, run)


def list_tags(ctx: Context) -> dict[str, Any]:
    scope = owner_scope(ctx, list_all=bool(ctx.flag("listall")))
    filters = {name: ctx.text(name) for name in ("resourceid", "resourcetype", "key", "value")}
    keyword = ctx.text("keyword")
    rows = [
        tag_view(ctx.state, tag) for tag in ctx.state.tags
        if scope.kind_ok(tag.owner) and scope.owns(tag.owner)
        and filters["resourceid"] in (None, tag.resource_id)
        and (filters["resourcetype"] is None or filters["resourcetype"].lower() == tag.resource_type.lower())
        and filters["key"] in (None, tag.key) and filters["value"] in (None, tag.value)
        and keyword_match(keyword, tag.key, tag.value)
    ]  # fmt: skip
    return paged_list(ctx, "tag", rows)


COMMANDS = {
    "createTags": (create_tags, None),
    "deleteTags": (delete_tags, None),
    "listTags": (list_tags, None),
}
