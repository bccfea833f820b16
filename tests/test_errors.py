import asyncio

import pytest

from tokentrail.errors import BudgetExceeded, categorize, status_code_of


class FakeResponse:
    def __init__(self, status_code):
        self.status_code = status_code


class APIStatusError(Exception):
    def __init__(self, message, status_code):
        super().__init__(message)
        self.status_code = status_code
        self.response = FakeResponse(status_code)


class APIConnectionError(Exception):
    pass


class APITimeoutError(APIConnectionError):
    pass


@pytest.mark.parametrize(
    "status, message, expected",
    [
        (429, "Rate limit reached", "rate_limit"),
        (401, "Incorrect API key", "authentication"),
        (403, "not allowed", "permission"),
        (404, "model not found", "not_found"),
        (400, "bad param", "invalid_request"),
        (400, "This model's maximum context length is 8192 tokens", "context_length"),
        (400, "prompt is too long: 210000 tokens > 200000 maximum", "context_length"),
        (400, "The response was filtered due to the prompt triggering content management policy", "content_filter"),
        (500, "oops", "server"),
        (503, "unavailable", "server"),
        (529, "Overloaded", "server"),
        (504, "gateway timeout", "timeout"),
    ],
)
def test_by_status_and_message(status, message, expected):
    exc = APIStatusError(message, status)
    assert status_code_of(exc) == status
    assert categorize(exc) == expected


def test_by_class_along_the_mro():
    assert categorize(APITimeoutError("Request timed out.")) == "timeout"
    assert categorize(APIConnectionError("Connection error.")) == "connection"

    class RateLimitError(Exception):
        pass

    class MyRetryableThing(RateLimitError):
        pass

    assert categorize(MyRetryableThing()) == "rate_limit"
    assert categorize(TimeoutError()) == "timeout"
    assert categorize(ConnectionResetError()) == "connection"
    assert categorize(ValueError("?")) == "unknown"


def test_cancelled_budget_and_classes():
    assert categorize(asyncio.CancelledError()) == "cancelled"
    assert categorize(KeyboardInterrupt()) == "cancelled"
    assert categorize(BudgetExceeded("over")) == "budget"
    assert categorize(None, status_code=429) == "rate_limit"
    assert categorize(None, message="maximum context length exceeded") == "context_length"


def test_botocore_client_errors_carry_their_status_in_the_response_dict():
    from botocore.exceptions import ClientError

    from tokentrail.errors import categorize, status_code_of

    error = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"},
                         "ResponseMetadata": {"HTTPStatusCode": 429}}, "Converse")
    assert status_code_of(error) == 429 and categorize(error) == "rate_limit"
