package policy

import (
	"fmt"
	"runtime"
)

// PanicValue describes a recovered panic value for a log line without
// risking a secret: a runtime error's own message (index out of range, nil
// dereference: never data), else only the value's type, since a panic
// raised with a formatted value might carry a request's key or token.
func PanicValue(v any) string {
	if err, ok := v.(runtime.Error); ok {
		return err.Error()
	}
	return fmt.Sprintf("panic value of type %T (not shown: it may hold request data)", v)
}
