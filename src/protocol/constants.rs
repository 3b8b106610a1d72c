//! The protocol's numbers, each defined once: capability flags (MySQL's
//! and MariaDB's extended ones), command bytes and server status flags.
//!
//! Heads up (MySQL `include/mysql_com.h`, `my_command.h`; MariaDB
//! "Connection" and "COM_*" pages): capabilities are negotiated once, in
//! the connection phase; a command is the first payload byte of a packet
//! with sequence id 0; status flags ride in OK and EOF packets.

/// Capability flags (MySQL `include/mysql_com.h`), the whole table: the
/// ones myroute never offers are listed too, so a reader sees what is left out.
pub mod caps {
    pub const LONG_PASSWORD: u32 = 1; // MariaDB: CLIENT_MYSQL
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
    pub const ZSTD_COMPRESSION: u32 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
    pub const MULTI_FACTOR_AUTH: u32 = 1 << 28;
    pub const CAPABILITY_EXTENSION: u32 = 1 << 29;
    pub const SSL_VERIFY_SERVER_CERT: u32 = 1 << 30;
    pub const REMEMBER_OPTIONS: u32 = 1 << 31;

    /// What myroute can offer a client: everything a byte relay passes
    /// through unchanged. Not here: SSL (offered as `tls` says), COMPRESS and ZSTD
    /// (the relay would have to understand compressed framing),
    /// MULTI_FACTOR_AUTH and CAPABILITY_EXTENSION (auth-phase extensions it
    /// does not speak), SSL_VERIFY_SERVER_CERT.
    pub const RELAYABLE: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | RESERVED
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_DATA
        | CAN_HANDLE_EXPIRED_PASSWORDS
        | SESSION_TRACK
        | DEPRECATE_EOF
        | OPTIONAL_RESULTSET_METADATA
        | QUERY_ATTRIBUTES
        | REMEMBER_OPTIONS;

    /// Flags that only shape the connection phase; myroute sets these on the
    /// backend leg as its own login needs, whatever the client chose. Every
    /// other flag the client chose goes to the backend exactly as chosen.
    pub const LOGIN_ONLY: u32 = LONG_PASSWORD
        | CONNECT_WITH_DB
        | SSL
        | SECURE_CONNECTION
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_DATA
        | REMEMBER_OPTIONS;
}

/// MariaDB's extended capabilities: the upper 32 bits of a 64-bit flag set,
/// sent in the last 4 bytes of the greeting's reserved area (when the
/// server clears CLIENT_MYSQL) and of the client's 23-byte filler.
pub mod ext {
    /// Progress reports (ERR-shaped packets with code 0xFFFF) during long
    /// statements.
    pub const PROGRESS: u32 = 1;
    /// COM_MULTI (several commands in one packet).
    pub const COM_MULTI: u32 = 1 << 1;
    /// COM_STMT_BULK_EXECUTE.
    pub const STMT_BULK_OPERATIONS: u32 = 1 << 2;
    /// Extended type information in column definitions.
    pub const EXTENDED_METADATA: u32 = 1 << 3;
    /// Column definitions sent only when they change (a "metadata follows"
    /// byte after the column count).
    pub const CACHE_METADATA: u32 = 1 << 4;
    /// A result set of per-row results for bulk operations.
    pub const BULK_UNIT_RESULTS: u32 = 1 << 5;

    /// What myroute offers a client when every known server offers it: the
    /// reply tracker follows each (it skips progress reports, reads the
    /// "metadata follows" byte, and a bulk execute gets one OK or ERR;
    /// extended metadata is inside column definitions it only counts).
    /// Not offered: COM_MULTI (gone from MariaDB, and one packet would carry
    /// several commands) and BULK_UNIT_RESULTS (a result set answers a bulk
    /// execute, in a layout the tracker cannot check against a server here).
    pub const OFFERED: u32 = PROGRESS | STMT_BULK_OPERATIONS | EXTENDED_METADATA | CACHE_METADATA;
}

/// Command bytes (the first payload byte of a command packet).
pub mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_KILL: u8 = 0x0C;
    pub const PING: u8 = 0x0E;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_FETCH: u8 = 0x1C;
    pub const BINLOG_DUMP_GTID: u8 = 0x1E;
    pub const CLONE: u8 = 0x20;
    pub const SUBSCRIBE_GROUP_REPLICATION_STREAM: u8 = 0x21;
    /// MariaDB's COM_STMT_BULK_EXECUTE.
    pub const STMT_BULK_EXECUTE: u8 = 0xFA;
}

/// Server status flags (SERVER_STATUS_* / SERVER_*), in OK and EOF packets.
pub mod status {
    /// A transaction is open.
    pub const IN_TRANS: u16 = 0x0001;
    /// The status a fresh session starts with.
    pub const AUTOCOMMIT: u16 = 0x0002;
    /// The same command gets another response.
    pub const MORE_RESULTS: u16 = 0x0008;
    /// COM_STMT_EXECUTE opened a cursor: its rows come in answer to
    /// COM_STMT_FETCH.
    pub const CURSOR_EXISTS: u16 = 0x0040;
    /// Session-state information follows the OK packet's info.
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}
