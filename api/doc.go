// Package api is the management API: HTTP/1.1 and JSON, for a platform's
// backend (with a management token) and for end users (with a JWT of a
// self-service issuer, or a session of the token page) to create, list,
// change, refresh and delete API keys kept in PostgreSQL, and for the
// platform to keep the directory (tenants, members, roles, user states);
// its OpenAPI document; and the embedded token page. It was keys/api.
//
// It decides who may do what (a user manages their own keys; a tenant
// admin also every key bound to their tenants; a management token
// everything), validates every request strictly, and leaves the doing to
// the store package. A refused call changes nothing; another user's key is a
// 404, never a 403. Neither a plaintext (outside the answers that create
// it) nor a digest ever appears in an answer or a log line.
package api
