-- Rows of the view `allergy_intolerance` for the latest version of each resource, deletes removed.
{{ latest_view_rows('allergy_intolerance') }}
