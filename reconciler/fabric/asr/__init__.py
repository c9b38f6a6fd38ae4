"""The Azure Site Recovery provider: a recovery vault driven through the official SDK.

`provider` implements the Protocol of `fabric.base`; `client` is the only
module that imports `azure` (the `drctl[asr]` extra); `reading`, `action`,
`vocabulary`, `settings` and `bucket` are the pure parts around it.
"""
