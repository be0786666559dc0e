package keys

// This file holds a key's own rate limit: what Envoy's rate limit service
// counts for it, handed over by the policy in each allow's metadata.

// Unit is a rate limit's unit of time, as Envoy's RateLimitUnit names it.
type Unit uint8

// The units; UnitNone is no limit.
const (
	UnitNone Unit = iota
	Second
	Minute
	Hour
	Day
	Month
	Year
)

var unitNames = [...]string{"", "SECOND", "MINUTE", "HOUR", "DAY", "MONTH", "YEAR"}

// String returns the unit as Envoy's RateLimitUnit enum names it
// ("MINUTE"), "" for UnitNone.
func (u Unit) String() string {
	if int(u) < len(unitNames) {
		return unitNames[u]
	}
	return ""
}

// UnitOf returns the unit Envoy's enum name s names, UnitNone for any other.
func UnitOf(s string) Unit {
	for i, n := range unitNames {
		if i > 0 && n == s {
			return Unit(i)
		}
	}
	return UnitNone
}

// RateLimit is PerUnit requests per Unit; the zero value is no limit.
type RateLimit struct {
	PerUnit uint32
	Unit    Unit
}
