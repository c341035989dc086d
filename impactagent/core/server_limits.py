"""What a real Unleash server can store, named once for the agent and the receiver: past
these it answers 202, then fails a whole write window, every app's counts in it."""

from __future__ import annotations

#: The largest integer a JSON number carries exactly (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_SAFE_INTEGER = 2**53 - 1

#: The largest variant count the server's row of one app, flag, variant and hour holds (a
#: PostgreSQL ``integer`` each write window adds to).
MAX_VARIANT_COUNT = 2**31 - 1

#: The longest app name the server's ``varchar(255)`` columns take. A longer one (or one
#: with NUL, which PostgreSQL text cannot hold) fails a write window's flag counts.
MAX_APP_NAME_LENGTH = 255

#: The longest instance id the server's ``varchar(255)`` column takes. A longer one (or one
#: with NUL) fails the server's registration of every client seen in the same 20 s batch.
MAX_INSTANCE_ID_LENGTH = 255

#: Properties of JavaScript's ``Object.prototype``: as variant names the server drops them,
#: or fails the window's write when one arrives twice.
OBJECT_PROTOTYPE_PROPERTIES = frozenset({
    "__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__",
    "__proto__", "constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable",
    "toLocaleString", "toString", "valueOf",
})

#: Variant names the server drops without a word (the other properties are stored).
DROPPED_VARIANT_NAMES = frozenset({"__proto__"})

#: Impact-metric label names (once sanitised) the server stores, after which its
#: impact-metrics exposition fails to parse, for every app.
EXPOSITION_BREAKING_LABELS = frozenset({"__name__", "__"})
