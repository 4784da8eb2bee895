"""liftlab raters: logged-in raters grade extractions and blind A/B pairs in a Streamlit app
(:mod:`raters.app`) over a service layer that holds every access rule (:mod:`raters.service`);
campaigns (:mod:`raters.campaigns`) and their results (:mod:`raters.results`) live in the catalog
next to the metrics."""
