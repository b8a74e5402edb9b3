"""Writing trained models in other toolkits' formats."""
