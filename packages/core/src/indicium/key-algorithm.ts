/** The algorithm of a meter's indicium key: an ECDSA P-256 or an RSA-2048 key. */
export type IndiciumKeyAlgorithm = 'ec-p256' | 'rsa-2048';
