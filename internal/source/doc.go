// Package source reads the project's configuration files (policies, keys
// files, management-token files) strictly and reports what is wrong with
// them where it is: every problem of a load at once, each as
// "file:line: field.path: what is wrong".
//
// It owns decoding (YAML or JSON, unknown fields refused), the mapping
// from a field path to a line, and the collection of problems. It must
// not know what any file means: the packages that compile files (policy,
// keys) say which fields are wrong and why.
package source
