"""What a real Unleash server can store, named once for the agent and the receiver: past
these it answers 202, then fails a whole write window, every app's counts in it."""

from __future__ import annotations

#: JavaScript's Number.MAX_SAFE_INTEGER.
MAX_SAFE_INTEGER = 2**53 - 1

#: The most the server's row of one app, flag, variant and hour holds (an ``integer``).
MAX_VARIANT_COUNT = 2**31 - 1

#: The server's ``varchar(255)`` columns: longer (or with NUL) fails a write window's flag
#: counts, or the registration of every client of its batch.
MAX_APP_NAME_LENGTH = 255
MAX_INSTANCE_ID_LENGTH = 255

#: Properties of JavaScript's ``Object.prototype``: as variant names the server drops them,
#: or fails the window's write when one arrives twice.
OBJECT_PROTOTYPE_PROPERTIES = frozenset({
    "__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__",
    "__proto__", "constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable",
    "toLocaleString", "toString", "valueOf",
})

#: Variant names the server drops without a word.
DROPPED_VARIANT_NAMES = frozenset({"__proto__"})

#: Label names (sanitised) after which the server's impact-metrics exposition fails.
EXPOSITION_BREAKING_LABELS = frozenset({"__name__", "__"})
