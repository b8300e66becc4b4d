"""Speech input for the IVR (planned). DTMF is the only input the engine uses today."""
