"""From data to a servable model: data sets (`data`), training (`train`), evaluation (`evaluate`)."""
