//! Forwarding of the protocol methods a wrapper does not intercept.

/// Forwards zero-argument `TInputProtocol` methods to `self.$f`.
macro_rules! fwd_in {
    ($f:ident; $($name:ident -> $ret:ty),* $(,)?) => {
        $(fn $name(&mut self) -> thrift::Result<$ret> { self.$f.$name() })*
    };
}

/// Forwards `TOutputProtocol` methods to `self.$f`.
macro_rules! fwd_out {
    ($f:ident; $($name:ident($($arg:ty)?)),* $(,)?) => {
        $(fwd_out!(@one $f $name $($arg)?);)*
    };
    (@one $f:ident $name:ident) => {
        fn $name(&mut self) -> thrift::Result<()> { self.$f.$name() }
    };
    (@one $f:ident $name:ident $arg:ty) => {
        fn $name(&mut self, a: $arg) -> thrift::Result<()> { self.$f.$name(a) }
    };
}

/// Every input method but `read_message_begin`, `read_message_end`, `read_field_begin`,
/// `read_string` (which wrappers implement themselves).
macro_rules! fwd_in_rest {
    ($f:ident) => {
        fwd_in!($f;
            read_struct_begin -> Option<thrift::protocol::TStructIdentifier>,
            read_struct_end -> (),
            read_field_end -> (),
            read_bool -> bool,
            read_bytes -> Vec<u8>,
            read_i8 -> i8,
            read_i16 -> i16,
            read_i32 -> i32,
            read_i64 -> i64,
            read_double -> f64,
            read_uuid -> uuid::Uuid,
            read_list_begin -> thrift::protocol::TListIdentifier,
            read_list_end -> (),
            read_set_begin -> thrift::protocol::TSetIdentifier,
            read_set_end -> (),
            read_map_begin -> thrift::protocol::TMapIdentifier,
            read_map_end -> (),
            read_byte -> u8,
            skip_binary -> (),
        );
        fn min_serialized_size(&self, t: thrift::protocol::TType) -> usize {
            self.$f.min_serialized_size(t)
        }
    };
}

/// Every output method but `write_message_begin`, `write_message_end`, `write_field_begin`,
/// `write_string`, `flush`.
macro_rules! fwd_out_rest {
    ($f:ident) => {
        fwd_out!($f;
            write_struct_begin(&thrift::protocol::TStructIdentifier),
            write_struct_end(),
            write_field_end(),
            write_field_stop(),
            write_bool(bool),
            write_bytes(&[u8]),
            write_i8(i8),
            write_i16(i16),
            write_i32(i32),
            write_i64(i64),
            write_double(f64),
            write_uuid(&uuid::Uuid),
            write_list_begin(&thrift::protocol::TListIdentifier),
            write_list_end(),
            write_set_begin(&thrift::protocol::TSetIdentifier),
            write_set_end(),
            write_map_begin(&thrift::protocol::TMapIdentifier),
            write_map_end(),
            write_byte(u8),
        );
    };
}
