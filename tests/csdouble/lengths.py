"""String parameter lengths, checked as CloudStack's ParamProcessWorker checks them before a command runs.

Each STRING `@Parameter` has a `length` (255 unless the command class says otherwise); a longer value
fails the whole request with PARAM_ERROR (431, cserrorcode 9999 of ServerApiException) and the text
"Unable to execute API command <command> due to invalid value. Value greater than max allowed length
<N> for param: <field>", where <command> is the response name without "response" and <field> is the
Java field's name, not the parameter's. Lengths are counted as Java does: in UTF-16 code units.

Only the string parameters of the commands kubectl-capc sends are listed, in the order the command
classes declare them (the first offender is reported). Map, list, UUID and boolean parameters carry no
length (tags, zoneids, ids).
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import param_error

DEFAULT_LENGTH = 255

# parameter name -> (Java field name, maximum length)
STRING_PARAMS: dict[str, tuple[tuple[str, str, int], ...]] = {
    # RegisterTemplateCmd
    "registerTemplate": (
        ("displaytext", "displayText", 4096),
        ("format", "format", DEFAULT_LENGTH),
        ("hypervisor", "hypervisor", DEFAULT_LENGTH),
        ("name", "templateName", DEFAULT_LENGTH),
        ("url", "url", 2048),
        ("account", "accountName", DEFAULT_LENGTH),
        ("checksum", "checksum", DEFAULT_LENGTH),
        ("templatetag", "templateTag", DEFAULT_LENGTH),
        ("templatetype", "templateType", DEFAULT_LENGTH),
        ("arch", "arch", DEFAULT_LENGTH),
    ),
    # AbstractGetUploadParamsCmd, then GetUploadParamsForTemplateCmd
    "getUploadParamsForTemplate": (
        ("name", "name", DEFAULT_LENGTH),
        ("format", "format", DEFAULT_LENGTH),
        ("checksum", "checksum", DEFAULT_LENGTH),
        ("account", "accountName", DEFAULT_LENGTH),
        ("displaytext", "displayText", 4096),
        ("hypervisor", "hypervisor", DEFAULT_LENGTH),
        ("arch", "arch", DEFAULT_LENGTH),
        ("templatetag", "templateTag", DEFAULT_LENGTH),
    ),
    # ListTemplatesCmd and its BaseListCmd / BaseListAccountResourcesCmd parents
    "listTemplates": (
        ("hypervisor", "hypervisor", DEFAULT_LENGTH),
        ("name", "templateName", DEFAULT_LENGTH),
        ("templatefilter", "templateFilter", DEFAULT_LENGTH),
        ("keyword", "keyword", DEFAULT_LENGTH),
        ("account", "accountName", DEFAULT_LENGTH),
    ),
    # CreateTagsCmd, DeleteTagsCmd
    "createTags": (
        ("resourcetype", "resourceType", DEFAULT_LENGTH),
        ("customer", "customer", DEFAULT_LENGTH),
    ),
    "deleteTags": (("resourcetype", "resourceType", DEFAULT_LENGTH),),
}


def java_length(value: str) -> int:
    """String.length(): UTF-16 code units, so a character outside the BMP counts twice."""
    return len(value.encode("utf-16-le")) // 2


def check_lengths(command: str, response_name: str, params: Mapping[str, str]) -> None:
    """Raise CloudStack's PARAM_ERROR for the first string parameter longer than its limit."""
    api_name = response_name.removesuffix("response")
    for name, field, limit in STRING_PARAMS.get(command, ()):
        value = params.get(name)
        if value is not None and java_length(value) > limit:
            raise param_error(
                f"Unable to execute API command {api_name} due to invalid value. "
                f"Value greater than max allowed length {limit} for param: {field}"
            )
