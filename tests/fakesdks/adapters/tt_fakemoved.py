"""An adapter for `fakemethod` written against a release whose internals have since moved: its second
patch names a class the installed library no longer has."""

from tokentrail.instrument.method_point import method
from tt_fakemethod import call_of, provider_of  # noqa: F401 - the same reading of calls

NAME = "fakemoved"
DISTRIBUTION = "fakemethod"
MIN_VERSION = (1, 0)
PATCHES = (
    method("fakemethod", "Client", "send", "sync"),
    method("fakemethod", "RenamedClient", "send", "sync"),
)
