// Builds the shipped protocol templates (templates/<port>_<proto>) from named fields, so every length and offset
// is computed rather than hand-counted. Output is deterministic: no clocks, no randomness, the same bytes every run.
//
//   node scripts/generate-templates.mjs [outDir]     (default: templates/ next to this script's parent)
//
// Two fictional hosts, each consistent with itself (see docs/templates.md):
//   - HQ-FS02, a Windows Server 2016 (10.0.14393) file server of Kestrel Freight: 21, 80, 135, 139, 445, 1433,
//     3389, 4444, 21000.
//   - mail.kestrelfreight.net, a Debian 12 mail/application host: 23, 25, 110, 143, 3306, 5060, 5900, 6379, 8080.
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const CRLF = '\r\n'
const MAIL_HOST = 'mail.kestrelfreight.net'

// ---------------------------------------------------------------------------------------------------------------
// Byte helpers. Each returns a Buffer so templates read as a list of fields in wire order.
// ---------------------------------------------------------------------------------------------------------------
function u8(value) {
  const b = Buffer.alloc(1)
  b.writeUInt8(value)
  return b
}
function u16le(value) {
  const b = Buffer.alloc(2)
  b.writeUInt16LE(value)
  return b
}
function u16be(value) {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(value)
  return b
}
function u24le(value) {
  const b = Buffer.alloc(3)
  b.writeUIntLE(value, 0, 3)
  return b
}
function u24be(value) {
  const b = Buffer.alloc(3)
  b.writeUIntBE(value, 0, 3)
  return b
}
function u32le(value) {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(value)
  return b
}
function u64le(value) {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(value)
  return b
}
function zeros(count) {
  return Buffer.alloc(count)
}
function ascii(text) {
  return Buffer.from(text, 'latin1')
}
function cstring(text) {
  return Buffer.concat([ascii(text), u8(0)])
}
function cat(...parts) {
  return Buffer.concat(parts)
}

/** A GUID in the Microsoft/NDR wire layout: the first three fields little-endian, the last 8 bytes as written. */
function guid(text) {
  const hex = text.replaceAll('-', '')
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new Error(`bad GUID ${text}`)
  const raw = Buffer.from(hex, 'hex')
  return cat(u32le(raw.readUInt32BE(0)), u16le(raw.readUInt16BE(4)), u16le(raw.readUInt16BE(6)), raw.subarray(8))
}

/** Windows FILETIME: 100 ns ticks since 1601-01-01 UTC. `extraTicks` adds the sub-millisecond part. */
function fileTime(isoDate, extraTicks = 0n) {
  const ms = BigInt(Date.parse(isoDate))
  return (ms + 11_644_473_600_000n) * 10_000n + extraTicks
}

/** An HTTP-date (RFC 9110 section 5.6.7, IMF-fixdate). */
function httpDate(isoDate) {
  return new Date(isoDate).toUTCString()
}

// ASN.1 DER (X.690): definite lengths, short form below 128, long form above.
function derLength(length) {
  if (length < 0x80) return u8(length)
  const bytes = []
  for (let n = length; n > 0; n >>= 8) bytes.unshift(n & 0xff)
  return cat(u8(0x80 | bytes.length), Buffer.from(bytes))
}
function der(tag, ...content) {
  const body = cat(...content)
  return cat(u8(tag), derLength(body.length), body)
}
/** OBJECT IDENTIFIER (X.690 8.19): first two arcs folded into one, the rest base-128 with continuation bits. */
function oid(dotted) {
  const arcs = dotted.split('.').map(Number)
  const first = arcs.shift() * 40 + arcs.shift()
  const out = []
  for (const arc of [first, ...arcs]) {
    const groups = [arc & 0x7f]
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) groups.unshift((n & 0x7f) | 0x80)
    out.push(...groups)
  }
  return der(0x06, Buffer.from(out))
}

/** Joins lines with CRLF and ends the last one too (SMTP, POP3, IMAP, FTP, HTTP and SIP all need CRLF). */
function crlfLines(...lines) {
  return ascii(lines.map((line) => line + CRLF).join(''))
}

// ---------------------------------------------------------------------------------------------------------------
// Banner protocols: the server speaks first.
// ---------------------------------------------------------------------------------------------------------------

// FTP (RFC 959 section 4.2): "220 Service ready for new user." IIS FTP's stock greeting text.
function ftp() {
  return crlfLines('220 Microsoft FTP Service')
}

// Telnet (RFC 854 "TELNET COMMAND STRUCTURE"): IAC = 255, WILL = 251, DO = 253. A Debian telnetd asks for the
// terminal options it needs, offers to echo and suppress go-ahead, then getty/login prints issue.net and the prompt.
function telnet() {
  const IAC = 255
  const WILL = 251
  const DO = 253
  const ECHO = 1 // RFC 857
  const SUPPRESS_GO_AHEAD = 3 // RFC 858
  const TERMINAL_TYPE = 24 // RFC 1091
  const NAWS = 31 // RFC 1073, window size
  const TERMINAL_SPEED = 32 // RFC 1079
  const LFLOW = 33 // RFC 1372, remote flow control
  const XDISPLOC = 35 // RFC 1096
  const NEW_ENVIRON = 39 // RFC 1572
  const option = (verb, code) => Buffer.from([IAC, verb, code])
  return cat(
    option(DO, TERMINAL_TYPE),
    option(DO, TERMINAL_SPEED),
    option(DO, XDISPLOC),
    option(DO, NEW_ENVIRON),
    option(WILL, SUPPRESS_GO_AHEAD),
    option(WILL, ECHO),
    option(DO, NAWS),
    option(DO, LFLOW),
    // RFC 854 "THE NVT PRINTER AND KEYBOARD": a line ends with CR LF.
    ascii(`${CRLF}Debian GNU/Linux 12${CRLF}mail login: `),
  )
}

// SMTP (RFC 5321 section 4.2 and 3.1): "220 <domain> <text>". Debian's default Postfix smtpd_banner.
function smtp() {
  return crlfLines(`220 ${MAIL_HOST} ESMTP Postfix (Debian/GNU)`)
}

// POP3 (RFC 1939 section 4): the greeting is a positive "+OK" response.
function pop3() {
  return crlfLines('+OK Dovecot (Debian) ready.')
}

// IMAP (RFC 9051 section 7.1.1 OK, 7.2.2 CAPABILITY response code): untagged OK greeting. LOGINDISABLED because
// plaintext logins are only allowed after STARTTLS (RFC 9051 section 6.2.3), Dovecot's default.
function imap() {
  const capabilities = ['IMAP4rev1', 'SASL-IR', 'LOGIN-REFERRALS', 'ID', 'ENABLE', 'IDLE', 'LITERAL+', 'STARTTLS', 'LOGINDISABLED']
  return crlfLines(`* OK [CAPABILITY ${capabilities.join(' ')}] Dovecot (Debian) ready.`)
}

// MySQL client/server protocol, "Protocol::HandshakeV10" inside a "Protocol::Packet" (3-byte little-endian payload
// length, 1-byte sequence id 0). MySQL 5.7 with mysql_native_password.
function mysql() {
  const CLIENT_LONG_PASSWORD = 0x1
  const CLIENT_FOUND_ROWS = 0x2
  const CLIENT_LONG_FLAG = 0x4
  const CLIENT_CONNECT_WITH_DB = 0x8
  const CLIENT_NO_SCHEMA = 0x10
  const CLIENT_COMPRESS = 0x20
  const CLIENT_ODBC = 0x40
  const CLIENT_LOCAL_FILES = 0x80
  const CLIENT_IGNORE_SPACE = 0x100
  const CLIENT_PROTOCOL_41 = 0x200
  const CLIENT_INTERACTIVE = 0x400
  const CLIENT_SSL = 0x800
  const CLIENT_IGNORE_SIGPIPE = 0x1000
  const CLIENT_TRANSACTIONS = 0x2000
  const CLIENT_RESERVED = 0x4000
  const CLIENT_SECURE_CONNECTION = 0x8000
  const CLIENT_MULTI_STATEMENTS = 0x1_0000
  const CLIENT_MULTI_RESULTS = 0x2_0000
  const CLIENT_PS_MULTI_RESULTS = 0x4_0000
  const CLIENT_PLUGIN_AUTH = 0x8_0000
  const CLIENT_CONNECT_ATTRS = 0x10_0000
  const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x20_0000
  const CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS = 0x40_0000
  const CLIENT_SESSION_TRACK = 0x80_0000
  const CLIENT_DEPRECATE_EOF = 0x100_0000
  const CLIENT_REMEMBER_OPTIONS = 0x8000_0000
  const capabilities =
    (CLIENT_LONG_PASSWORD | CLIENT_FOUND_ROWS | CLIENT_LONG_FLAG | CLIENT_CONNECT_WITH_DB | CLIENT_NO_SCHEMA |
      CLIENT_COMPRESS | CLIENT_ODBC | CLIENT_LOCAL_FILES | CLIENT_IGNORE_SPACE | CLIENT_PROTOCOL_41 |
      CLIENT_INTERACTIVE | CLIENT_SSL | CLIENT_IGNORE_SIGPIPE | CLIENT_TRANSACTIONS | CLIENT_RESERVED |
      CLIENT_SECURE_CONNECTION | CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS |
      CLIENT_PLUGIN_AUTH | CLIENT_CONNECT_ATTRS | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
      CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS | CLIENT_SESSION_TRACK | CLIENT_DEPRECATE_EOF | CLIENT_REMEMBER_OPTIONS) >>> 0
  const SERVER_STATUS_AUTOCOMMIT = 0x0002
  const LATIN1_SWEDISH_CI = 8 // the 5.7 default server collation
  // A fixed 20-byte scramble in the range a real server draws from (1..127, never NUL, never '$'). It is the same
  // on every connection, which only a client comparing two handshakes would notice.
  const scramble = Buffer.from([
    0x1f, 0x5a, 0x3e, 0x71, 0x0c, 0x4d, 0x27, 0x62, 0x18, 0x6e, 0x35, 0x7b, 0x52, 0x09, 0x44, 0x6b, 0x2f, 0x13, 0x58, 0x61,
  ])
  if (scramble.length !== 20) throw new Error('mysql_native_password scramble must be 20 bytes')
  const payload = cat(
    u8(10), // protocol version
    cstring('5.7.42-log'), // server version, NUL-terminated
    u32le(4137), // connection id (thread id)
    scramble.subarray(0, 8), // auth-plugin-data-part-1
    u8(0), // filler
    u16le(capabilities & 0xffff), // capability flags, lower 2 bytes
    u8(LATIN1_SWEDISH_CI), // character set
    u16le(SERVER_STATUS_AUTOCOMMIT), // status flags
    u16le(capabilities >>> 16), // capability flags, upper 2 bytes
    u8(scramble.length + 1), // length of auth-plugin-data (CLIENT_PLUGIN_AUTH): 20 bytes + NUL
    zeros(10), // reserved
    // auth-plugin-data-part-2: max(13, length - 8) bytes, i.e. the last 12 scramble bytes and a NUL.
    cstring(scramble.subarray(8).toString('latin1')),
    cstring('mysql_native_password'), // auth-plugin name (CLIENT_PLUGIN_AUTH)
  )
  return cat(u24le(payload.length), u8(0), payload)
}

// Windows cmd.exe on Windows Server 2016 (build 14393), as a bind shell shows it: banner, blank line, prompt.
function cmdShell() {
  return ascii(
    `Microsoft Windows [Version 10.0.14393]${CRLF}(c) 2016 Microsoft Corporation. All rights reserved.${CRLF}${CRLF}C:\\Windows\\system32>`,
  )
}

// RFB (RFC 6143 section 7.1.1): the ProtocolVersion handshake is exactly 12 bytes, "RFB 003.008\n".
function rfb() {
  return ascii('RFB 003.008\n')
}

// ---------------------------------------------------------------------------------------------------------------
// On-data protocols: the client speaks first; the template is the reply to the usual first request.
// ---------------------------------------------------------------------------------------------------------------

/** An HTTP/1.1 response (RFC 9112 section 4 status line, RFC 9110 section 8.6 Content-Length) with CRLF framing. */
function httpResponse(statusLine, headers, body) {
  const lines = [statusLine, ...headers.map(([name, value]) => `${name}: ${value}`), `Content-Length: ${body.length}`]
  return cat(ascii(lines.join(CRLF) + CRLF + CRLF), body)
}

// IIS 10.0 serving a static page. IIS's ETag is the file's FILETIME in hex plus ":<change number>", so it is
// derived from Last-Modified to stay consistent. No Date header: a fixed one would be stale on every reply.
function httpIis() {
  const modified = '2023-11-14T09:12:40.582Z' // Last-Modified shows whole seconds; the ETag keeps the rest
  const body = ascii(
    [
      '<!DOCTYPE html>',
      '<html lang="en">',
      '<head>',
      '<meta charset="utf-8">',
      '<title>Kestrel Freight - Intranet</title>',
      '</head>',
      '<body>',
      '<h1>Kestrel Freight</h1>',
      '<p>Internal file services. Sign in with your KESTREL domain account to reach the shared folders.</p>',
      '<p>Helpdesk: extension 4410</p>',
      '</body>',
      '</html>',
      '',
    ].join(CRLF),
  )
  return httpResponse(
    'HTTP/1.1 200 OK',
    [
      ['Content-Type', 'text/html'],
      ['Last-Modified', httpDate(modified)],
      ['Accept-Ranges', 'bytes'],
      ['ETag', `"${fileTime(modified, 3917n).toString(16)}:0"`],
      ['Server', 'Microsoft-IIS/10.0'],
      ['X-Powered-By', 'ASP.NET'],
    ],
    body,
  )
}

// Apache Tomcat 10 (Debian's tomcat10) serving a static page through its DefaultServlet: the status line has an
// empty reason phrase (allowed by RFC 9112 section 4), no Server header, and a weak ETag "W/<length>-<mtime ms>".
function httpTomcat() {
  const modified = '2024-02-06T15:27:08.417Z' // Last-Modified shows whole seconds; the ETag keeps milliseconds
  const body = ascii(
    [
      '<!DOCTYPE html>',
      '<html lang="en">',
      '<head><meta charset="UTF-8"><title>Shipment Tracking</title></head>',
      '<body>',
      '<h1>Shipment Tracking</h1>',
      '<p>Enter a consignment number to see where your freight is.</p>',
      '<form method="get" action="/tracking/lookup"><input name="ref" maxlength="20"> <button>Track</button></form>',
      '</body>',
      '</html>',
      '',
    ].join('\n'),
  )
  return httpResponse(
    'HTTP/1.1 200 ',
    [
      ['Accept-Ranges', 'bytes'],
      ['ETag', `W/"${body.length}-${Date.parse(modified)}"`],
      ['Last-Modified', httpDate(modified)],
      ['Content-Type', 'text/html'],
    ],
    body,
  )
}

// DCE/RPC connection-oriented bind_ack (C706 "DCE 1.1: RPC" chapter 12.6), the endpoint mapper's reply to a bind.
function dceRpcBindAck() {
  const PTYPE_BIND_ACK = 12 // C706 12.6.4.1 (table of PDU types)
  const PFC_FIRST_FRAG = 0x01
  const PFC_LAST_FRAG = 0x02
  // C706 14.1 data representation: integers little-endian, ASCII characters, IEEE floating point.
  const DREP_LITTLE_ENDIAN_ASCII_IEEE = Buffer.from([0x10, 0x00, 0x00, 0x00])
  const secondaryAddress = cstring('135') // port_any_t: the endpoint mapper's own port, NUL included in the length
  const NDR_TRANSFER_SYNTAX = guid('8a885d04-1ceb-11c9-9fe8-08002b104860') // C706 appendix I, NDR version 2
  const COMMON_HEADER_BYTES = 16

  const bodyBeforePad = cat(
    u16le(5840), // max_xmit_frag
    u16le(5840), // max_recv_frag
    u32le(0x0001_582c), // assoc_group_id, a nonzero group the server made up for this association
    u16le(secondaryAddress.length), // sec_addr.length
    secondaryAddress, // sec_addr.port_spec
  )
  // C706 12.6.4.4: the result list starts 4-byte aligned (relative to the PDU start).
  const pad = zeros((4 - ((COMMON_HEADER_BYTES + bodyBeforePad.length) % 4)) % 4)
  const resultList = cat(
    u8(1), // n_results
    u8(0), // reserved
    u16le(0), // reserved2
    u16le(0), // p_result_t.result: acceptance
    u16le(0), // p_result_t.reason: reason_not_specified
    NDR_TRANSFER_SYNTAX, // transfer_syntax.if_uuid
    u32le(2), // transfer_syntax.if_version
  )
  const body = cat(bodyBeforePad, pad, resultList)
  const header = cat(
    u8(5), // rpc_vers
    u8(0), // rpc_vers_minor
    u8(PTYPE_BIND_ACK),
    u8(PFC_FIRST_FRAG | PFC_LAST_FRAG),
    DREP_LITTLE_ENDIAN_ASCII_IEEE,
    u16le(COMMON_HEADER_BYTES + body.length), // frag_length: the whole PDU
    u16le(0), // auth_length: no verifier
    u32le(1), // call_id (a first bind from most clients carries call_id 1)
  )
  return cat(header, body)
}

// NetBIOS session service (RFC 1002 section 4.3.3): POSITIVE SESSION RESPONSE, type 0x82, flags 0, length 0.
function netbiosSession() {
  return Buffer.from([0x82, 0x00, 0x00, 0x00])
}

// SPNEGO NegTokenInit as Windows sends it in a NEGOTIATE response: RFC 2743 section 3.1 framing, RFC 4178
// section 4.2.1 NegTokenInit, with the MS-SPNG section 2.2.1 negHints (NegTokenInit2) hint name.
function spnegoNegTokenInit() {
  const SPNEGO = '1.3.6.1.5.5.2'
  const mechanisms = [
    '1.3.6.1.4.1.311.2.2.30', // NEGOEX (MS-NEGOEX)
    '1.2.840.48018.1.2.2', // Kerberos 5, Microsoft's legacy OID
    '1.2.840.113554.1.2.2', // Kerberos 5 (RFC 4121)
    '1.2.840.113554.1.2.2.3', // Kerberos 5 user-to-user
    '1.3.6.1.4.1.311.2.2.10', // NTLMSSP (MS-NLMP)
  ]
  const mechTypes = der(0xa0, der(0x30, ...mechanisms.map(oid))) // [0] MechTypeList
  const hintName = der(0x1b, ascii('not_defined_in_RFC4178@please_ignore')) // GeneralString
  const negHints = der(0xa3, der(0x30, der(0xa0, hintName))) // [3] NegHints { [0] hintName }
  const negTokenInit = der(0xa0, der(0x30, mechTypes, negHints)) // NegotiationToken CHOICE [0]
  return der(0x60, oid(SPNEGO), negTokenInit) // [APPLICATION 0] InitialContextToken
}

// SMB2 NEGOTIATE response (MS-SMB2 2.2.4) under an SMB2 sync header (2.2.1.2), framed for Direct TCP (2.1).
function smb2Negotiate() {
  const SMB2_HEADER_BYTES = 64
  const NEGOTIATE_FIXED_BYTES = 64 // StructureSize 65 counts one byte of the variable buffer
  const SMB2_NEGOTIATE = 0x0000
  const SMB2_FLAGS_SERVER_TO_REDIR = 0x0000_0001
  const SMB2_NEGOTIATE_SIGNING_ENABLED = 0x0001 // a member server: signing offered, not required
  const SMB302 = 0x0302
  const SMB2_GLOBAL_CAP_DFS = 0x01
  const SMB2_GLOBAL_CAP_LEASING = 0x02
  const SMB2_GLOBAL_CAP_LARGE_MTU = 0x04
  const SMB2_GLOBAL_CAP_MULTI_CHANNEL = 0x08
  const SMB2_GLOBAL_CAP_DIRECTORY_LEASING = 0x20
  const EIGHT_MIB = 8 * 1024 * 1024

  const securityBuffer = spnegoNegTokenInit()
  const header = cat(
    Buffer.from([0xfe, 0x53, 0x4d, 0x42]), // ProtocolId: 0xFE 'S' 'M' 'B'
    u16le(SMB2_HEADER_BYTES), // StructureSize
    u16le(0), // CreditCharge
    u32le(0), // Status: STATUS_SUCCESS
    u16le(SMB2_NEGOTIATE), // Command
    u16le(1), // CreditResponse: credits granted
    u32le(SMB2_FLAGS_SERVER_TO_REDIR), // Flags
    u32le(0), // NextCommand: not compounded
    u64le(0n), // MessageId: the client's first request
    u32le(0), // Reserved
    u32le(0), // TreeId
    u64le(0n), // SessionId
    zeros(16), // Signature: unsigned
  )
  const negotiate = cat(
    u16le(NEGOTIATE_FIXED_BYTES + 1), // StructureSize: 65
    u16le(SMB2_NEGOTIATE_SIGNING_ENABLED), // SecurityMode
    u16le(SMB302), // DialectRevision
    u16le(0), // NegotiateContextCount/Reserved: no contexts below 3.1.1
    guid('3c1b8e72-5f0a-4d9e-a6b4-91d07e2c58f3'), // ServerGuid
    u32le(
      SMB2_GLOBAL_CAP_DFS | SMB2_GLOBAL_CAP_LEASING | SMB2_GLOBAL_CAP_LARGE_MTU | SMB2_GLOBAL_CAP_MULTI_CHANNEL |
        SMB2_GLOBAL_CAP_DIRECTORY_LEASING,
    ), // Capabilities
    u32le(EIGHT_MIB), // MaxTransactSize
    u32le(EIGHT_MIB), // MaxReadSize
    u32le(EIGHT_MIB), // MaxWriteSize
    u64le(fileTime('2024-03-12T08:41:27.331Z', 6574n)), // SystemTime (FILETIME)
    u64le(0n), // ServerStartTime: 0, as servers on the 3.x dialects send
    u16le(SMB2_HEADER_BYTES + NEGOTIATE_FIXED_BYTES), // SecurityBufferOffset, from the start of the SMB2 header
    u16le(securityBuffer.length), // SecurityBufferLength
    u32le(0), // NegotiateContextOffset/Reserved2
    securityBuffer, // Buffer
  )
  const message = cat(header, negotiate)
  // MS-SMB2 2.1 Direct TCP transport: a zero byte, then the message length as 3 bytes big-endian.
  return cat(u8(0), u24be(message.length), message)
}

// MS-TDS PRELOGIN response (2.2.6.5) in a packet of type 0x04, tabular result (2.2.3.1.1), from SQL Server 2016
// SP3 (13.0.6300).
function tdsPrelogin() {
  const TABULAR_RESULT = 0x04
  const STATUS_EOM = 0x01 // 2.2.3.1.2: last packet of the message
  const PACKET_HEADER_BYTES = 8
  const ENCRYPT_OFF = 0x00 // encryption available, not required: login packet encrypted only
  const options = [
    // VERSION: UL_VERSION (major, minor, build big-endian) then US_SUBBUILD.
    { token: 0x00, data: cat(u8(13), u8(0), u16be(6300), u16be(0)) },
    { token: 0x01, data: u8(ENCRYPT_OFF) }, // ENCRYPTION
    { token: 0x02, data: u8(0x00) }, // INSTOPT: 0x00, the instance name matched
    { token: 0x03, data: zeros(0) }, // THREADID: empty in a server response
    { token: 0x04, data: u8(0x00) }, // MARS: off
  ]
  const OPTION_BYTES = 5 // PL_OPTION_TOKEN, PL_OFFSET (USHORT), PL_OPTION_LENGTH (USHORT), big-endian
  let offset = options.length * OPTION_BYTES + 1 // data starts after the option list and its 0xFF terminator
  const optionList = []
  for (const { token, data } of options) {
    optionList.push(cat(u8(token), u16be(offset), u16be(data.length)))
    offset += data.length
  }
  const payload = cat(...optionList, u8(0xff), ...options.map((o) => o.data))
  const header = cat(
    u8(TABULAR_RESULT),
    u8(STATUS_EOM),
    u16be(PACKET_HEADER_BYTES + payload.length), // Length: header included, big-endian
    u16be(0), // SPID: no session yet
    u8(1), // PacketID
    u8(0), // Window: unused, 0
  )
  return cat(header, payload)
}

// RDP X.224 Connection Confirm (MS-RDPBCGR 2.2.1.2) in a TPKT (RFC 1006 section 6 / T.123 section 8), choosing
// CredSSP (Network Level Authentication), Windows Server 2016's default.
function rdpConnectionConfirm() {
  const TPKT_HEADER_BYTES = 4
  const X224_CC = 0xd0 // X.224 13.4: Connection Confirm, credit 0
  const TYPE_RDP_NEG_RSP = 0x02
  const EXTENDED_CLIENT_DATA_SUPPORTED = 0x01
  const DYNVC_GFX_PROTOCOL_SUPPORTED = 0x02
  const NEGRSP_FLAG_RESERVED = 0x04
  const RESTRICTED_ADMIN_MODE_SUPPORTED = 0x08
  const REDIRECTED_AUTHENTICATION_MODE_SUPPORTED = 0x10
  const PROTOCOL_HYBRID = 0x0000_0002
  const RDP_NEG_RSP_BYTES = 8

  const negotiationResponse = cat(
    u8(TYPE_RDP_NEG_RSP),
    u8(
      EXTENDED_CLIENT_DATA_SUPPORTED | DYNVC_GFX_PROTOCOL_SUPPORTED | NEGRSP_FLAG_RESERVED |
        RESTRICTED_ADMIN_MODE_SUPPORTED | REDIRECTED_AUTHENTICATION_MODE_SUPPORTED,
    ),
    u16le(RDP_NEG_RSP_BYTES), // length, little-endian like the rest of RDP
    u32le(PROTOCOL_HYBRID), // selectedProtocol
  )
  // MS-RDPBCGR 3.2.5.3.2 / 2.2.1.2: DST-REF 0, SRC-REF 0x1234, class 0 (big-endian, as X.224 is).
  const x224Fixed = cat(u8(X224_CC), u16be(0x0000), u16be(0x1234), u8(0x00))
  const x224 = cat(u8(x224Fixed.length + negotiationResponse.length), x224Fixed, negotiationResponse) // LI excludes itself
  const tpktLength = TPKT_HEADER_BYTES + x224.length
  return cat(u8(3), u8(0), u16be(tpktLength), x224) // TPKT version 3, reserved, length of the whole packet
}

// SIP (RFC 3261 section 11.2): a 200 OK to OPTIONS from an Asterisk (chan_sip) PBX. Header lines end in CRLF
// (section 7) and Content-Length is 0 (section 20.14). A fixed reply cannot echo the request's Via/From/To/Call-ID
// (section 8.2.6.2); scanners that only read Server/Allow do not notice.
function sipOptionsOk(transport) {
  return crlfLines(
    'SIP/2.0 200 OK',
    `Via: SIP/2.0/${transport} 10.20.4.31:5060;branch=z9hG4bK5e1c83a0;rport=5060`,
    'From: <sip:100@10.20.4.12>;tag=1c07a2f9',
    'To: <sip:100@10.20.4.12>;tag=as7f3e21d4',
    'Call-ID: 4b82c1e07d39f6a5201e8c4d9a7b3f60@10.20.4.31',
    'CSeq: 1 OPTIONS',
    'Server: Asterisk PBX 16.28.0',
    'Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE',
    'Supported: replaces, timer',
    'Accept: application/sdp',
    'Content-Length: 0',
    '',
  )
}

// RESP (Redis serialization protocol, "Simple errors"): the reply to any command when requirepass is set.
function redis() {
  return crlfLines('-NOAUTH Authentication required.')
}

// ---------------------------------------------------------------------------------------------------------------

/** Every shipped template, by file name. */
export function buildTemplates() {
  return new Map([
    ['21_tcp', ftp()],
    ['23_tcp', telnet()],
    ['25_tcp', smtp()],
    ['80_tcp', httpIis()],
    ['110_tcp', pop3()],
    ['135_tcp', dceRpcBindAck()],
    ['139_tcp', netbiosSession()],
    ['143_tcp', imap()],
    ['445_tcp', smb2Negotiate()],
    ['1433_tcp', tdsPrelogin()],
    ['3306_tcp', mysql()],
    ['3389_tcp', rdpConnectionConfirm()],
    ['4444_tcp', cmdShell()],
    ['5060_tcp', sipOptionsOk('TCP')],
    ['5060_udp', sipOptionsOk('UDP')],
    ['5900_tcp', rfb()],
    ['6379_tcp', redis()],
    ['8080_tcp', httpTomcat()],
    ['21000_tcp', cmdShell()],
  ])
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)
if (isMain) {
  const outDir = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'templates'))
  mkdirSync(outDir, { recursive: true })
  for (const [name, bytes] of buildTemplates()) writeFileSync(join(outDir, name), bytes)
  process.stdout.write(`wrote ${buildTemplates().size} templates to ${outDir}\n`)
}
