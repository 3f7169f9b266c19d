//! The walk over a statement's parse tree, through serde's data model.
//!
//! pg_query derives `Serialize` for every message of the tree, so the
//! derive visits every field of every message, including the messages a
//! field holds directly rather than as a node (a cast's `TypeName`, a
//! `RangeVar`): nothing a hand-written traversal could forget. This
//! serializer names each message by its type as it passes, refuses the
//! ones [`nodes`](super::nodes) refuses, and keeps only the few names and
//! positions the checks need. Nothing of the tree is copied.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::nodes::{self, NodeClass};
use super::{Found, Violation, reaches_of, refused_node, violation};

/// What the walk kept of one message of class [`NodeClass::Reaches`] (or a
/// `String`, whose value its parent collects): its scalar fields of
/// interest and the names of its lists of `String` nodes.
#[derive(Debug, Default)]
pub(super) struct Message {
    /// The node type, as `NodeEnum` names it.
    pub kind: &'static str,
    pub location: Option<i64>,
    /// Integer fields (`op`, `kind`).
    pub numbers: Vec<(&'static str, i64)>,
    /// Text fields (`relname`, `ctename`, `sval`, …).
    pub texts: Vec<(&'static str, String)>,
    /// Lists of `String` nodes (`funcname`, `fields`, …), by field.
    pub names: Vec<(&'static str, Vec<String>)>,
    /// The position of the node an `arg` field holds (`(expr).field`).
    pub arg_location: Option<i64>,
}

impl Message {
    pub fn number(&self, field: &str) -> Option<i64> {
        self.numbers
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, n)| *n)
    }

    pub fn text(&self, field: &str) -> Option<&str> {
        self.texts
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, t)| t.as_str())
    }

    /// The names a list field holds, exactly: the parser has folded
    /// unquoted names to lower case already, and a quoted name means
    /// exactly what it says (`"PG_SLEEP"` is not `pg_sleep`).
    pub fn names(&self, field: &str) -> Vec<String> {
        self.names
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, names)| names.clone())
            .unwrap_or_default()
    }
}

/// A message being walked.
struct Frame {
    message: Message,
    class: NodeClass,
    /// Whether its fields are kept ([`NodeClass::Reaches`], and a `String`
    /// inside one).
    keeps: bool,
    /// The field being walked.
    field: &'static str,
    /// How many reaches and WITH queries were found before this message:
    /// its own go before its children's, in the order a reader meets them.
    before: (usize, usize),
}

/// Visits every message of `statement`, refusing what the policy refuses
/// and collecting what it must check into `found`.
pub(super) fn walk(
    statement: &pg_query::protobuf::Node,
    found: &mut Found,
) -> Result<(), Violation> {
    let mut walker = Walker {
        stack: Vec::new(),
        found,
    };
    statement
        .serialize(&mut walker)
        .map_err(|Stop(violation)| violation)
}

struct Walker<'f> {
    stack: Vec<Frame>,
    found: &'f mut Found,
}

impl Walker<'_> {
    /// Where a scalar of the current field goes, if its message keeps it.
    fn keeping(&mut self) -> Option<(&mut Message, &'static str)> {
        self.stack
            .last_mut()
            .filter(|frame| frame.keeps)
            .map(|frame| (&mut frame.message, frame.field))
    }

    fn number(&mut self, value: i64) {
        match self.stack.last_mut() {
            Some(frame) if frame.field == "location" => frame.message.location = Some(value),
            Some(frame) if frame.keeps => frame.message.numbers.push((frame.field, value)),
            _ => {}
        }
    }

    /// A message ends: hand what it kept to its parent, check it, or
    /// refuse it.
    fn end(&mut self) -> Result<(), Stop> {
        let frame = self.stack.pop().expect("a message ends after it starts");
        let message = frame.message;
        if let Some(parent) = self.stack.last_mut() {
            if parent.keeps && parent.field == "arg" {
                parent.message.arg_location = message.location;
            }
            if parent.keeps
                && message.kind == "String"
                && let Some(name) = message.text("sval")
            {
                match parent.message.names.last_mut() {
                    Some((field, names)) if *field == parent.field => names.push(name.to_owned()),
                    _ => parent
                        .message
                        .names
                        .push((parent.field, vec![name.to_owned()])),
                }
            }
        }
        match frame.class {
            NodeClass::Structure => Ok(()),
            NodeClass::Reaches => {
                let (reaches, ctes) = (self.found.reaches.len(), self.found.ctes.len());
                reaches_of(&message, self.found);
                self.found.reaches[frame.before.0..].rotate_left(reaches - frame.before.0);
                self.found.ctes[frame.before.1..].rotate_left(ctes - frame.before.1);
                Ok(())
            }
            NodeClass::Refused => {
                let rule = refused_node(message.kind)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{} not allowed in a query", message.kind));
                Err(Stop(violation(rule, message.location)))
            }
        }
    }
}

/// The walk stops at the first refusal.
#[derive(Debug)]
struct Stop(Violation);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Stop(violation(
            format!("cannot inspect the statement: {msg}"),
            None,
        ))
    }
}

/// The node type and class of every message type of the tree, by the name
/// its `Serialize` gives it (`SqlValueFunction` for the node type
/// `SqlvalueFunction`). Derived from the parser's own types, once.
static MESSAGE_TYPES: LazyLock<HashMap<&'static str, (&'static str, NodeClass)>> =
    LazyLock::new(|| {
        nodes::every_node()
            .into_iter()
            .filter_map(|(kind, class, node)| {
                let Err(TypeName(name)) = node.serialize(TypeNameOf) else {
                    return None;
                };
                Some((name, (kind, class)))
            })
            .collect()
    });

/// The node type of a node, as `NodeEnum` names it.
pub(super) fn node_type(node: &pg_query::NodeEnum) -> &'static str {
    match node.serialize(TypeNameOf) {
        Err(TypeName(name)) => message_type(name).map_or("unknown", |(kind, _)| kind),
        Ok(()) => "unknown",
    }
}

/// The node type and class of a message type; `None` for the `Node`
/// wrapper, which only holds one of them.
fn message_type(name: &'static str) -> Option<(&'static str, NodeClass)> {
    if name == "Node" {
        return None;
    }
    // a message type that is not a node type is refused under its own name
    Some(
        MESSAGE_TYPES
            .get(name)
            .copied()
            .unwrap_or((name, NodeClass::Refused)),
    )
}

/// An option, a newtype and an enum's newtype variant: what they hold.
macro_rules! pass_through {
    ($error:ty) => {
        fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), $error> {
            value.serialize(self)
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            value: &T,
        ) -> Result<(), $error> {
            value.serialize(self)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            value: &T,
        ) -> Result<(), $error> {
            value.serialize(self)
        }
    };
}

/// Every integer is kept as an `i64` (positions, operator and expression
/// kinds).
macro_rules! integers {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Result<(), Stop> {
            self.serialize_i64(v.into())
        }
    )*};
}

impl<'a, 'f> ser::Serializer for &'a mut Walker<'f> {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Fields<'a, 'f>;
    type SerializeStructVariant = Fields<'a, 'f>;

    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Fields<'a, 'f>, Stop> {
        let Some((kind, class)) = message_type(name) else {
            return Ok(Fields {
                walker: self,
                message: false,
            });
        };
        {
            self.stack.push(Frame {
                message: Message {
                    kind,
                    ..Message::default()
                },
                class,
                // a `String`'s value only matters to a parent that keeps it
                keeps: class == NodeClass::Reaches
                    || (kind == "String" && self.stack.last().is_some_and(|parent| parent.keeps)),
                field: "",
                before: (self.found.reaches.len(), self.found.ctes.len()),
            });
        }
        Ok(Fields {
            walker: self,
            message: true,
        })
    }

    fn serialize_bool(self, _: bool) -> Result<(), Stop> {
        Ok(())
    }
    integers!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32
    );
    fn serialize_i64(self, v: i64) -> Result<(), Stop> {
        self.number(v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Stop> {
        self.serialize_i64(i64::try_from(v).unwrap_or(i64::MAX))
    }
    fn serialize_f32(self, _: f32) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Stop> {
        if let Some((message, field)) = self.keeping() {
            message.texts.push((field, v.to_owned()));
        }
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Stop> {
        Ok(())
    }

    fn serialize_unit(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Stop> {
        Ok(())
    }
    // `Node`'s one-of and `AConst`'s value: the message inside names itself
    pass_through!(Stop);
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Stop> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Stop> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Stop> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Stop> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Stop> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Fields<'a, 'f>, Stop> {
        self.serialize_struct(name, len)
    }
}

/// The elements of a list (and of shapes the tree does not use, walked
/// alike so that nothing is skipped).
macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Walker<'_> {
            type Ok = ();
            type Error = Stop;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Stop> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Stop> {
                Ok(())
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut Walker<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Stop> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Stop> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}

/// A struct's fields: a message's, or the `Node` wrapper's one field,
/// which holds a message.
struct Fields<'a, 'f> {
    walker: &'a mut Walker<'f>,
    /// Whether this struct is a message with a frame of its own.
    message: bool,
}

/// A refused message's fields other than its position are not walked: it
/// is refused whatever they hold.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Fields<'_, '_> {
            type Ok = ();
            type Error = Stop;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Stop> {
                if self.message {
                    let frame = self.walker.stack.last_mut().expect("a message has a frame");
                    if frame.class == NodeClass::Refused && key != "location" {
                        return Ok(());
                    }
                    frame.field = key;
                }
                value.serialize(&mut *self.walker)
            }
            fn end(self) -> Result<(), Stop> {
                if self.message { self.walker.end() } else { Ok(()) }
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

/// The name a message type's `Serialize` gives it: the serializer stops at
/// the first struct and carries its name out as the error.
struct TypeNameOf;

#[derive(Debug)]
struct TypeName(&'static str);

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TypeName {}

impl ser::Error for TypeName {
    fn custom<T: fmt::Display>(_: T) -> Self {
        TypeName("")
    }
}

/// Every shape but a struct or the variant around one ends the search.
macro_rules! no_name {
    ($($method:ident($($ty:ty),*)),*) => {$(
        fn $method(self, $(_: $ty),*) -> Result<(), TypeName> {
            Err(TypeName(""))
        }
    )*};
}

impl ser::Serializer for TypeNameOf {
    type Ok = ();
    type Error = TypeName;
    type SerializeSeq = Impossible<(), TypeName>;
    type SerializeTuple = Impossible<(), TypeName>;
    type SerializeTupleStruct = Impossible<(), TypeName>;
    type SerializeTupleVariant = Impossible<(), TypeName>;
    type SerializeMap = Impossible<(), TypeName>;
    type SerializeStruct = Impossible<(), TypeName>;
    type SerializeStructVariant = Impossible<(), TypeName>;

    fn serialize_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, TypeName> {
        Err(TypeName(name))
    }
    pass_through!(TypeName);
    no_name!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str)
    );
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, TypeName> {
        Err(TypeName(""))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, TypeName> {
        Err(TypeName(""))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, TypeName> {
        Err(TypeName(""))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, TypeName> {
        Err(TypeName(""))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, TypeName> {
        Err(TypeName(""))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, TypeName> {
        Err(TypeName(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_policy::Reach;

    fn walked(sql: &str) -> Result<Found, Violation> {
        let parsed = pg_query::parse(sql, pg_query::ParserOptions::default()).unwrap();
        let statement = parsed.protobuf.stmts[0].stmt.as_deref().unwrap();
        let mut found = Found::default();
        walk(statement, &mut found).map(|()| found)
    }

    #[test]
    fn every_message_type_is_named_as_its_node_type() {
        assert_eq!(MESSAGE_TYPES.len(), nodes::ALL_NODE_NAMES.len());
        // the nine types whose Rust name is not their node type's name
        assert_eq!(
            message_type("SqlValueFunction"),
            Some(("SqlvalueFunction", NodeClass::Reaches))
        );
        assert_eq!(
            message_type("CteSearchClause"),
            Some(("CtesearchClause", NodeClass::Structure))
        );
        assert_eq!(message_type("Node"), None);
        assert_eq!(
            message_type("SomeFutureNode"),
            Some(("SomeFutureNode", NodeClass::Refused))
        );
    }

    #[test]
    fn a_node_is_named_by_its_node_type() {
        let set = pg_query::NodeEnum::VariableSetStmt(Default::default());
        assert_eq!(node_type(&set), "VariableSetStmt");
        let value = pg_query::NodeEnum::SqlvalueFunction(Default::default());
        assert_eq!(node_type(&value), "SqlvalueFunction");
    }

    #[test]
    fn messages_a_field_holds_directly_are_walked() {
        // a cast's TypeName and SEARCH's clause are fields, not nodes
        let found = walked(
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) \
             SEARCH DEPTH FIRST BY n SET ord SELECT n::regclass FROM t",
        )
        .unwrap();
        assert!(
            found
                .reaches
                .iter()
                .any(|r| matches!(r, Reach::Type(name, _) if name == &["regclass"]))
        );
        assert_eq!(found.ctes.len(), 1);
        let Err(refused) = walked("SELECT * FROM (SELECT 1) s FOR UPDATE") else {
            panic!("FOR UPDATE is refused");
        };
        assert!(refused.rule.contains("FOR UPDATE"), "{refused}");
    }

    #[test]
    fn a_node_is_reached_before_its_children() {
        let found = walked("SELECT lower(upper('x'))").unwrap();
        let functions: Vec<_> = found
            .reaches
            .iter()
            .filter_map(|r| match r {
                Reach::Function(name, _) => Some(name.join(".")),
                _ => None,
            })
            .collect();
        assert_eq!(functions, ["lower", "upper"]);
    }
}
