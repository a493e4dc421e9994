"""CloudStack's error vocabulary: HTTP status = errorcode, plus the Java exception code (cserrorcode)."""

from __future__ import annotations

UNAUTHORIZED = 401
PARAM_ERROR = 431
UNSUPPORTED_ACTION = 432
INTERNAL_ERROR = 530
ACCOUNT_ERROR = 531
RESOURCE_LIMIT_ERROR = 532  # ApiErrorCode.ACCOUNT_RESOURCE_LIMIT_ERROR
INSUFFICIENT_CAPACITY = 533
RESOURCE_ALLOCATION = 535

# CSExceptionErrorCode values of the Java exceptions the double imitates.
CS_UNKNOWN = 9999
CS_CLOUD_RUNTIME = 4250
CS_INVALID_PARAMETER = 4350
CS_PERMISSION_DENIED = 4365

USER_ERROR_MESSAGE = "Internal error executing command, please contact your system administrator"
AUTH_FAILED_TEXT = "unable to verify user credentials and/or request signature"
UNKNOWN_COMMAND_TEXT = "The given command does not exist or it is not available for user"


class ApiError(Exception):
    """An API failure, rendered as CloudStack's ExceptionResponse (or a failed async job)."""

    def __init__(self, errorcode: int, errortext: str, cserrorcode: int | None = CS_UNKNOWN) -> None:
        super().__init__(errortext)
        self.errorcode = errorcode
        self.errortext = errortext
        self.cserrorcode = cserrorcode

    def body(self) -> dict[str, object]:
        """The error object as CloudStack serializes it (401s carry no cserrorcode)."""
        body: dict[str, object] = {"uuidList": [], "errorcode": self.errorcode}
        if self.cserrorcode is not None:
            body["cserrorcode"] = self.cserrorcode
        body["errortext"] = self.errortext
        return body


def invalid_parameter(text: str) -> ApiError:
    """InvalidParameterValueException thrown by a service, mapped to 431."""
    return ApiError(PARAM_ERROR, text, CS_INVALID_PARAMETER)


def illegal_argument(text: str) -> ApiError:
    """IllegalArgumentException thrown by a service, mapped to 431 with an unknown cserrorcode."""
    return ApiError(PARAM_ERROR, text, CS_UNKNOWN)


def permission_denied(text: str) -> ApiError:
    """PermissionDeniedException, mapped to 531."""
    return ApiError(ACCOUNT_ERROR, text, CS_PERMISSION_DENIED)


def cloud_runtime(text: str) -> ApiError:
    """CloudRuntimeException escaping a service: 530 with its own message."""
    return ApiError(INTERNAL_ERROR, text, CS_CLOUD_RUNTIME)


def param_error(text: str) -> ApiError:
    """A ServerApiException(PARAM_ERROR) raised by the command itself."""
    return ApiError(PARAM_ERROR, text, CS_UNKNOWN)
