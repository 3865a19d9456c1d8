//! Leshan's JSON for LwM2M nodes (`{"id", "kind", "type", "value" | "values" | "resources"
//! | "instances"}`), both ways, typed by the object model.
