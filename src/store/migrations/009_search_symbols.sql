-- Search for what the word parser drops (docs/search.md): an emoji, `:)`. Such a query has no
-- lexeme for `search_tsv`, and too few letters for a trigram (pg_trgm keeps letters and digits
-- only), so without this index it would read every message of the rooms searched. The
-- distinct characters of a message that are neither letters, digits nor spaces: a query's
-- must all be among them (`@>`, GIN) before its ILIKE is checked. IMMUTABLE: the character
-- classes are the database's, fixed when it was created.
CREATE FUNCTION search_symbols(t text) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT coalesce(array_agg(DISTINCT m[1]), '{}') FROM regexp_matches(t, '([^[:alnum:][:space:]])', 'g') m $$;
CREATE INDEX messages_search_symbols ON messages USING gin (search_symbols(search_body)) WHERE search_body IS NOT NULL;
