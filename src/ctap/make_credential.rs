//! authenticatorMakeCredential (0x01), CTAP 2.1 §6.1.

use ciborium::Value;

use super::auth_data::{self, AttestedCredential, FLAG_UP, FLAG_UV};
use super::cbor::{MapBuilder, RequestMap, read};
use super::credential_id;
use super::params::{CredentialDescriptor, Options, RpEntity, UserEntity, parse_cred_param};
use super::presence::RequestContext;
use super::status::{CtapResult, StatusCode};
use super::user_verification::{Operation, UvRequest};
use super::{AAGUID, AttestationFormat, Authenticator};
use crate::crypto::{self, Algorithm, CredentialKey};
use crate::store::Credential;

pub(super) fn make_credential(
    auth: &mut Authenticator,
    params: &[u8],
    ctx: &RequestContext,
) -> CtapResult<Value> {
    if params.is_empty() {
        return Err(StatusCode::MissingParameter);
    }
    let mut m = RequestMap::parse(params)?;
    let client_data_hash = read::bytes(read::required(m.take(0x01))?)?;
    let rp = RpEntity::parse(read::required(m.take(0x02))?)?;
    let user = UserEntity::parse(read::required(m.take(0x03))?)?;
    let cred_params = read::array(read::required(m.take(0x04))?)?;
    let exclude_list = m
        .take(0x05)
        .map(CredentialDescriptor::parse_list)
        .transpose()?;
    let extensions = m.take(0x06).map(read::map).transpose()?;
    let options = Options::parse(m.take(0x07))?;
    let pin_uv_auth_param = m.take(0x08).map(read::bytes).transpose()?;
    let pin_uv_auth_protocol = m.take(0x09).map(read::unsigned).transpose()?;
    let enterprise_attestation = m.take(0x0a).map(read::unsigned).transpose()?;

    // Step 3: every entry is validated; the first supported algorithm in the RP's order wins.
    let mut alg = None;
    for p in cred_params {
        let (public_key, id) = parse_cred_param(p)?;
        if public_key && alg.is_none() {
            alg = Algorithm::from_cose_id(id);
        }
    }
    let alg = alg.ok_or(StatusCode::UnsupportedAlgorithm)?;

    // Steps 4–5: options.
    if options.up == Some(false) {
        return Err(StatusCode::InvalidOption);
    }
    let rk = options.rk.unwrap_or(false);

    // Steps 1–2, 5–11: pinUvAuthParam / built-in UV / alwaysUv / makeCredUvNotRqd.
    let v = auth.verify_user(
        Operation::MakeCredential { rk },
        &UvRequest {
            rp_id: &rp.id,
            client_data_hash: &client_data_hash,
            pin_uv_auth_param: pin_uv_auth_param.as_deref(),
            pin_uv_auth_protocol,
            uv_option: options.uv,
        },
        ctx,
    )?;

    // Step 9: enterprise attestation is not supported (no "ep" in getInfo).
    if enterprise_attestation.is_some() {
        return Err(StatusCode::InvalidParameter);
    }

    let rp_id_hash = crypto::sha256(rp.id.as_bytes());

    // Step 12: a credential of ours for this RP in excludeList → touch, then EXCLUDED.
    // One with credProtect userVerificationRequired counts only if the user was verified.
    if let Some(list) = &exclude_list {
        for d in list.iter().filter(|d| d.public_key) {
            if auth
                .find_credential(&rp_id_hash, &d.id)
                .is_some_and(|c| c.cred_protect < 3 || v.uv)
            {
                auth.presence_for(
                    &v,
                    ctx,
                    &format!("makeCredential for {} (already registered)", rp.id),
                )?;
                return Err(StatusCode::CredentialExcluded);
            }
        }
    }

    // Step 13: extensions. credProtect (§12.1) levels 1–3; minPinLength (§12.4) for the
    // RP IDs authenticatorConfig allowed. Values out of range are ignored.
    let mut cred_protect = None;
    let mut min_pin_length = false;
    for (k, val) in extensions.unwrap_or_default() {
        match k.as_text() {
            Some("credProtect") => {
                let level = read::unsigned(val)?;
                if (1..=3).contains(&level) {
                    cred_protect = Some(level as u8);
                }
            }
            Some("minPinLength") => min_pin_length = read::boolean(val)?,
            _ => {}
        }
    }

    // Step 14: user presence (a token's userPresent or built-in UV may stand in).
    auth.presence_for(&v, ctx, &format!("register with {}", rp.id))?;

    // Steps 16–17: create the credential; a discoverable one goes to the store.
    let key = CredentialKey::generate(alg);
    let protect_level = cred_protect.unwrap_or(1);
    let id = credential_id::seal(
        auth.store.wrapping_key(),
        &rp_id_hash,
        &key,
        rk,
        protect_level,
    );
    if rk {
        auth.store.put_credential(Credential {
            id: id.clone(),
            rp_id: rp.id.clone(),
            rp_name: rp.name.clone(),
            user_id: user.id.clone(),
            user_name: user.name.clone(),
            user_display_name: user.display_name.clone(),
            cred_protect: protect_level,
            discoverable: true,
            private_key: None,
        })?;
    }

    // Step 15: the token's presence and verification are used up.
    if v.token {
        auth.state.token.consume();
    }

    // Step 19: authenticator data and attestation statement.
    let flags = FLAG_UP | if v.uv { FLAG_UV } else { 0 } | auth.backup_flags();
    let mut outputs = MapBuilder::new();
    let mut any_output = false;
    if let Some(level) = cred_protect {
        outputs = outputs.text("credProtect", Value::Integer(level.into()));
        any_output = true;
    }
    if let Some(n) = auth
        .store
        .min_pin_length_for(&rp.id)
        .filter(|_| min_pin_length)
    {
        outputs = outputs.text("minPinLength", Value::Integer(n.into()));
        any_output = true;
    }
    let auth_data = auth_data::build(
        &rp_id_hash,
        flags,
        0,
        Some(AttestedCredential {
            aaguid: &AAGUID,
            credential_id: &id,
            public_key: key.cose_public_key(),
        }),
        any_output.then(|| outputs.build()),
    );
    let mut signed = auth_data.clone();
    signed.extend_from_slice(&client_data_hash);
    let (fmt, att_stmt) = match auth.config.attestation {
        AttestationFormat::Packed => match &auth.attestation {
            Some(a) => (
                "packed",
                MapBuilder::new()
                    .text("alg", Value::Integer((-7).into()))
                    .text("sig", Value::Bytes(a.sign(&signed)))
                    .text(
                        "x5c",
                        Value::Array(vec![Value::Bytes(a.batch_cert_der.clone())]),
                    )
                    .build(),
            ),
            None => return Err(StatusCode::Other),
        },
        // Self attestation (WebAuthn §8.2): signed by the credential key, no x5c.
        AttestationFormat::SelfAttestation => (
            "packed",
            MapBuilder::new()
                .text("alg", Value::Integer(alg.cose_id().into()))
                .text("sig", Value::Bytes(key.sign(&signed)))
                .build(),
        ),
        AttestationFormat::None => ("none", Value::Map(Vec::new())),
    };
    Ok(MapBuilder::new()
        .int(0x01, fmt)
        .int(0x02, Value::Bytes(auth_data))
        .int(0x03, att_stmt)
        .build())
}
