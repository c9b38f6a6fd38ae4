"""The Hyper-V Replica provider: the hosts driven directly over PowerShell Remoting.

`provider` implements the Protocol of `fabric.base`; `remoting` is the only
module that imports `pypsrp` (the `drctl[hyperv]` extra) and `local` runs
`pwsh` on this machine; both are `runner.Runner`s. `script` writes every
script the provider sends, `reading` maps their answers to the observed
model, `job` is drctl's own multi-step jobs (Hyper-V has no service-side
jobs), `settings` the declaration as the provider reads it.
"""
