"""Everything Qt: the window, models, delegates, workers, dialogs."""
