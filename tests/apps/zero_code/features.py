"""The flags the zero-code tests' receiver serves to the apps' UnleashClient
(``Receiver(features=FEATURES)``)."""

#: dark-mode: on for ann and bob. new-checkout: on for ann, bob, cat and dan, each of them
#: blue or green (the SDK decides, by userId); off for anyone else.
FEATURES = {"version": 1, "features": [
    {"name": "dark-mode", "type": "release", "project": "default", "enabled": True,
     "strategies": [{"name": "userWithId", "parameters": {"userIds": "ann,bob"}}]},
    {"name": "new-checkout", "type": "experiment", "project": "default", "enabled": True,
     "strategies": [{"name": "userWithId", "parameters": {"userIds": "ann,bob,cat,dan"}}],
     "variants": [
         {"name": "blue", "weight": 500, "weightType": "variable", "stickiness": "userId"},
         {"name": "green", "weight": 500, "weightType": "variable", "stickiness": "userId"}]},
]}
