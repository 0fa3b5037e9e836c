"""The rollover engine: the state machine of :mod:`rollover.core.phases` driven against the
edges it is handed (:mod:`rollover.ports`), one guarded step at a time."""
