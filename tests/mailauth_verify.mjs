// mailauth_verify.mjs: the npm package mailauth (Postal Systems) as an
// independent verifier for tests/test_differential.py.
//
// stdin: one JSON object
//   {"zone":  {name: {TYPE: [value, ...]}},     the union of the cases' zones
//    "modes": {name: [mode, subtree]},            "servfail", "timeout", ...
//    "mta":   "test.example",
//    "cases": [{"name", "message" (base64), "ip", "helo", "sender"}]}
// stdout: one JSON object {case name: result}, each result
//   {"spf":   {"result", "domain"},
//    "dkim":  [{"result", "comment", "d", "s", "a", "t", "x"}] (t and x
//             only for a signature mailauth processed),
//    "dmarc": {"result", "policy", "org_domain", "spf_aligned",
//              "dkim_aligned"} or null,
//    "from":  the first From address mailauth parsed, or null}
//
// DNS comes from the zone data through mailauth's `resolver` option,
// answered the way tests/fake_dns.py answers the same zone (NXDOMAIN
// for a name not there, NODATA for a name without the type or an empty
// non-terminal, CNAMEs followed, a mode for a name or its subtree), so
// mailauth sees what smtpd asks the fake DNS server for.  Nothing here
// touches the network.  BIMI and ARC are off.  strict: true (mailauth
// follows RFC 6376, RFC 7208 and RFC 9989 exactly; rsa-sha1 is
// "policy", RFC 8301 3.1).

import Module, { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

// mailauth's BIMI code loads undici at start, and the undici it pins
// needs Node 22 (webidl.util.markAsUncloneable).  BIMI is off here and
// nothing else in mailauth uses undici, so a stand-in takes its place
// in the module cache: the rest of mailauth runs on Debian's Node 20.
const undiciPath = createRequire(require.resolve('mailauth')).resolve('undici');
const undiciStub = new Module(undiciPath);
undiciStub.filename = undiciPath;
undiciStub.loaded = true;
undiciStub.exports = {
    fetch: () => {
        throw new Error('no network here: BIMI is off');
    },
    Agent: class {}
};
require.cache[undiciPath] = undiciStub;

const { authenticate } = require('mailauth');

const MAX_CNAME_HOPS = 8;
const MAX_INPUT = 64 * 1024 * 1024;

function norm(name) {
    let n = String(name).trim().toLowerCase();
    if (n.endsWith('.') && n !== '.') {
        n = n.slice(0, -1);
    }
    return n;
}

function dnsError(code, name, type) {
    const err = new Error(`${type} ${name}: ${code}`);
    err.code = code;
    err.hostname = name;
    return err;
}

// TXT rdata as its character-strings, as tests/fake_dns.py splits them
function txtStrings(value) {
    if (Array.isArray(value)) {
        return value.map(String);
    }
    const bytes = Buffer.from(String(value), 'utf8');
    if (bytes.length === 0) {
        return [''];
    }
    const out = [];
    for (let i = 0; i < bytes.length; i += 255) {
        out.push(bytes.subarray(i, i + 255).toString('utf8'));
    }
    return out;
}

function formatRecords(type, values) {
    switch (type) {
        case 'TXT':
            return values.map(txtStrings);
        case 'MX':
            return values.map(v => {
                const [pref, host] = Array.isArray(v) ? v : String(v).split(/\s+/, 2);
                return { exchange: norm(host), priority: Number(pref) };
            });
        case 'A':
        case 'AAAA':
            return values.map(String);
        default:
            return values.map(v => norm(v));
    }
}

function makeResolver(zone, modes) {
    const records = new Map();
    for (const [name, types] of Object.entries(zone || {})) {
        const n = norm(name);
        const mine = records.get(n) || {};
        for (const [type, values] of Object.entries(types)) {
            const t = type.toUpperCase();
            mine[t] = (mine[t] || []).concat(values);
        }
        records.set(n, mine);
    }
    const names = Array.from(records.keys());
    const modeMap = new Map(Object.entries(modes || {}).map(([k, v]) => [norm(k), v]));

    const modeOf = name => {
        const own = modeMap.get(name);
        if (own) {
            return own[0];
        }
        const labels = name.split('.');
        for (let i = 1; i < labels.length; i++) {
            const m = modeMap.get(labels.slice(i).join('.'));
            if (m && m[1]) {
                return m[0];
            }
        }
        return null;
    };
    const exists = name => records.has(name) || names.some(k => k.endsWith('.' + name));

    return async (name, rrtype) => {
        const type = String(rrtype || 'A').toUpperCase();
        let q = norm(name);
        switch (modeOf(q)) {
            case 'timeout':
                throw dnsError('ETIMEOUT', q, type);
            case 'servfail':
                throw dnsError('ESERVFAIL', q, type);
            case 'refused':
                throw dnsError('EREFUSED', q, type);
            case 'nxdomain':
                throw dnsError('ENOTFOUND', q, type);
            default:
                break;
        }
        for (let hop = 0; hop < MAX_CNAME_HOPS; hop++) {
            const recs = records.get(q);
            if (!recs) {
                throw dnsError(exists(q) ? 'ENODATA' : 'ENOTFOUND', q, type);
            }
            if (recs[type] && recs[type].length) {
                return formatRecords(type, recs[type]);
            }
            if (recs.CNAME && recs.CNAME.length && type !== 'CNAME') {
                q = norm(recs.CNAME[0]);
                continue;
            }
            throw dnsError('ENODATA', q, type);
        }
        throw dnsError('ESERVFAIL', q, type);
    };
}

function seconds(iso) {
    if (!iso) {
        return null;
    }
    const ms = Date.parse(iso);
    return Number.isNaN(ms) ? null : Math.round(ms / 1000);
}

function summarize(res) {
    const out = { spf: null, dkim: [], dmarc: null, from: null };
    if (res.spf) {
        out.spf = { result: res.spf.status?.result || null, domain: res.spf.domain || null };
    }
    for (const r of res.dkim?.results || []) {
        if (r.status?.result === 'none' && !r.signingDomain && !r.signature) {
            continue; // "message not signed"
        }
        const sig = {
            result: r.status?.result || null,
            comment: r.status?.comment || null,
            d: r.signingDomain || null,
            s: r.selector || null,
            a: r.algo || null
        };
        // a signature mailauth could not process at all has no times
        if ('signTime' in r) {
            sig.t = seconds(r.signTime);
            sig.x = seconds(r.expiresAfter);
        }
        out.dkim.push(sig);
    }
    if (res.dmarc) {
        const al = res.dmarc.alignment || {};
        out.dmarc = {
            result: res.dmarc.status?.result || null,
            policy: res.dmarc.policy || null,
            org_domain: res.dmarc.domain || null,
            spf_aligned: !!al.spf?.result,
            dkim_aligned: !!al.dkim?.result
        };
    }
    const from = res.dkim?.headerFrom;
    if (Array.isArray(from) && from.length) {
        out.from = from[0];
    }
    return out;
}

async function readStdin() {
    const chunks = [];
    let size = 0;
    for await (const chunk of process.stdin) {
        size += chunk.length;
        if (size > MAX_INPUT) {
            throw new Error('input too large');
        }
        chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
}

async function main() {
    const input = JSON.parse(await readStdin());
    const resolver = makeResolver(input.zone, input.modes);
    const results = {};
    for (const c of input.cases || []) {
        try {
            const res = await authenticate(Buffer.from(c.message, 'base64'), {
                ip: c.ip,
                helo: c.helo,
                sender: c.sender,
                mta: input.mta || 'test.example',
                resolver,
                strict: true,
                minBitLength: 1024,
                disableArc: true,
                disableBimi: true
            });
            results[c.name] = summarize(res);
        } catch (err) {
            results[c.name] = { error: String(err && err.stack ? err.stack : err) };
        }
    }
    process.stdout.write(JSON.stringify(results));
}

main().catch(err => {
    process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
    process.exit(1);
});
