"""liftlab raters: human ratings of extractions (the Streamlit app arrives with its own issue)."""
