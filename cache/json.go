package cache

import (
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// strictJSON reads an IdP's document (a JWK set, a discovery document)
// with field names matched exactly and no name twice in an object: a
// document that says "keys" or "issuer" twice, or "Issuer", is not read as
// if it said something else. Unknown names are allowed, since IdPs publish
// many fields; nothing may follow the document.
func strictJSON(data []byte, v any) error {
	err := json.Unmarshal(data, v, json.MatchCaseInsensitiveNames(false), jsontext.AllowDuplicateNames(false))
	if err != nil {
		return fmt.Errorf("not a JSON document of the expected shape: %w", err)
	}
	return nil
}
