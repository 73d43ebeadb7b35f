"""Personal-data masking by Korean numbering rules: figures of the same shape survive untouched."""

from __future__ import annotations

from collections import Counter

import pytest

from medft.data.clean import mask_personal_data

# Medical and insurance figures that must come out byte for byte.
SURVIVORS = [
    # ranges of amounts and counts shaped like 6-7 digit registration numbers
    "본인부담금은 100000-1500000원입니다.",
    "청구 건수는 150000-4500000건입니다.",
    "진료비 구간 200101-3000000원은 별도 산정합니다.",  # valid YYMMDD and sex digit, but an amount
    "요양급여비용 1,500,000-2,000,000원 구간입니다.",
    # lab values, doses, vital signs
    "HbA1c 6.5% 이상이면 당뇨병으로 진단합니다.",
    "LDL 130 mg/dL 미만을 목표로 합니다.",
    "eGFR 60 mL/min/1.73m² 미만이 3개월 이상 지속되면 만성 콩팥병입니다.",
    "아세트아미노펜 500 mg 1일 3회 복용하세요.",
    "공복혈당 100-125 mg/dL은 공복혈당장애입니다.",
    "혈중 칼륨 3.5-5.0 mmol/L가 정상입니다.",
    "혈소판 150,000-450,000/μL 범위입니다.",
    "백혈구 4000-10000/μL이면 정상입니다.",
    "혈압 120/80 mmHg로 측정되었습니다.",
    "체온 36.5-37.5도 사이를 유지합니다.",
    "PSA 0.5-4.0 ng/mL 범위입니다.",
    "키 170 cm, 체중 65 kg, BMI 25 kg/m² 이상입니다.",
    "1일 2회, 1회 1정씩 복용합니다.",
    # calorie and fluid ranges shaped like 15xx/16xx/18xx service numbers
    "하루 1500-2000kcal 섭취를 권장합니다.",
    "성인 여성은 1650-1800 kcal가 적당합니다.",
    "하루 1800-2200 mL 수분을 섭취합니다.",
    "당일 내원 환자는 1577-1600명이었습니다.",
    "1899-1910년 사이에 보고된 증례입니다.",
    # counts and amounts with thousands separators
    "환자수 1,234,567명으로 집계되었습니다.",
    "총 진료비 12,345,000원이 청구되었습니다.",
    "약가는 1,234원/정입니다.",
    "인구 10만명당 123.4명이 진단받았습니다.",
    # dates, periods, times
    "진료일 2023-10-15에 내원했습니다.",
    "급여기간은 2023.01.01~2023.12.31입니다.",
    "2019-2023년 동안 증가했습니다.",
    "적용 기간 2020.10.01-2021.09.30 동안 유효합니다.",
    "접수 시간은 09:00-18:00입니다.",
    "2023년 10월 15일 개정되었습니다.",
    # KCD / ICD codes
    "상병코드 I10(본태성 고혈압)으로 청구합니다.",
    "E11.9 합병증을 동반하지 않은 2형 당뇨병입니다.",
    "C34.1 상엽 기관지 또는 폐의 악성 신생물입니다.",
    "코드 J00-J06 급성 상기도 감염입니다.",
    "K29.7 상세불명의 위염으로 분류합니다.",
    # institution, business, product and claim numbers
    "요양기관기호 11100010 병원입니다.",
    "요양기관기호 31201234로 조회하세요.",
    "사업자등록번호 123-45-67890은 병원의 번호입니다.",  # identifies a business, not a person
    "제품코드 KD-010-1234-5678을 확인하세요.",
    "증권번호 010-1234-5678-01로 접수되었습니다.",
    "청구번호 23-0012345로 조회됩니다.",
    "EDI 코드 643301230을 입력합니다.",
    "문서번호 0312345678을 참고하세요.",  # ten bare digits: only mobiles are written bare
    # 13-digit numbers that fail the registration-number rules
    "청구번호 2023101512345로 접수되었습니다.",  # month 23
    "바코드 1234567890123을 스캔합니다.",  # month 34
    "접수번호 2310153001234로 조회합니다.",  # date and sex digit hold, checksum fails, bare
    "영수증 번호 8503151234567입니다.",  # date and sex digit hold, checksum fails, bare
    "검체번호 850315 1234567로 확인합니다.",  # the same with a space
    "일련번호 991332-1234567은 유효하지 않습니다.",  # day 32
    "코드 990229-1234567은 없습니다.",  # 1999 was no leap year
]

RRN, FRN, PHONE, EMAIL = (
    "resident_registration_number",
    "foreigner_registration_number",
    "phone_number",
    "email",
)

# (sentence, masked sentence, kind counted once).
PERSONAL = [
    # both the pre-2020 checksum and the date hold
    ("환자 주민등록번호는 850315-1234566입니다.", "환자 주민등록번호는 [주민등록번호]입니다.", RRN),
    ("주민번호 8503151234566 확인 바랍니다.", "주민번호 [주민등록번호] 확인 바랍니다.", RRN),
    ("등록번호 920728 2345671로 조회했습니다.", "등록번호 [주민등록번호]로 조회했습니다.", RRN),
    ("아이 주민번호는 010203-3123451입니다.", "아이 주민번호는 [주민등록번호]입니다.", RRN),
    ("2000년 윤일생 000229-3123454입니다.", "2000년 윤일생 [주민등록번호]입니다.", RRN),
    # hyphenated with a random tail (issued since October 2020): date and sex digit suffice
    ("신생아 주민번호는 231015-4871920이에요.", "신생아 주민번호는 [주민등록번호]이에요.", RRN),
    ("주민번호 900101 - 1234567로 접수했습니다.", "주민번호 [주민등록번호]로 접수했습니다.", RRN),
    # foreigners: sex digit 5-8, check digit offset by 2
    ("외국인등록번호 880515-5123453 지참하세요.", "외국인등록번호 [외국인등록번호] 지참하세요.", FRN),
    ("외국인 환자 9501016543210 등록 완료.", "외국인 환자 [외국인등록번호] 등록 완료.", FRN),
    ("외국인 아동 150620-7123451입니다.", "외국인 아동 [외국인등록번호]입니다.", FRN),
    # mobile
    ("휴대폰 010-1234-5678로 연락 주세요.", "휴대폰 [전화번호]로 연락 주세요.", PHONE),
    ("연락처는 010.2345.6789입니다.", "연락처는 [전화번호]입니다.", PHONE),
    ("보호자 010 3456 7890에게 알렸습니다.", "보호자 [전화번호]에게 알렸습니다.", PHONE),
    ("휴대폰01045678901로 문자 주세요.", "휴대폰[전화번호]로 문자 주세요.", PHONE),
    ("예전 번호 011-234-5678은 해지했습니다.", "예전 번호 [전화번호]은 해지했습니다.", PHONE),
    ("019-9876-5432로 전화했습니다.", "[전화번호]로 전화했습니다.", PHONE),
    # landlines, internet and personal numbers
    ("병원 대표번호 02-123-4567입니다.", "병원 대표번호 [전화번호]입니다.", PHONE),
    ("원무과 (02) 123-4567로 문의하세요.", "원무과 [전화번호]로 문의하세요.", PHONE),
    ("분당 지점 (031)987-6543입니다.", "분당 지점 [전화번호]입니다.", PHONE),
    ("의원 전화 031.234.5678입니다.", "의원 전화 [전화번호]입니다.", PHONE),
    ("부산 051 345 6789로 예약하세요.", "부산 [전화번호]로 예약하세요.", PHONE),
    ("제주 Tel.064-712-3456", "제주 Tel.[전화번호]", PHONE),
    ("인터넷전화 070-4321-8765입니다.", "인터넷전화 [전화번호]입니다.", PHONE),
    ("안심번호 0505-123-4567로 연결됩니다.", "안심번호 [전화번호]로 연결됩니다.", PHONE),
    ("수신자부담 080-023-5000입니다.", "수신자부담 [전화번호]입니다.", PHONE),
    # 전국대표번호
    ("콜센터 1577-1234로 문의하세요.", "콜센터 [전화번호]로 문의하세요.", PHONE),
    ("상담 1644-8282 이용 바랍니다.", "상담 [전화번호] 이용 바랍니다.", PHONE),
    ("고객센터 1899-0123입니다.", "고객센터 [전화번호]입니다.", PHONE),
    # +82, trunk 0 dropped
    ("해외에서는 +82-10-1234-5678로 거세요.", "해외에서는 [전화번호]로 거세요.", PHONE),
    ("국제전화 +82 10 2345 6789입니다.", "국제전화 [전화번호]입니다.", PHONE),
    ("번호 +821012345678로 등록했습니다.", "번호 [전화번호]로 등록했습니다.", PHONE),
    ("서울 +82 (0)2 123 4567입니다.", "서울 [전화번호]입니다.", PHONE),
    ("병원 +82-2-3456-7890입니다.", "병원 [전화번호]입니다.", PHONE),
    # e-mail
    ("메일 kim.doctor+qa@hospital.co.kr 로 보내 주세요.", "메일 [이메일] 로 보내 주세요.", EMAIL),
    ("담당자 nurse_lee@snuh.org로 회신했습니다.", "담당자 [이메일]로 회신했습니다.", EMAIL),
    ("문의:help-desk@hira.or.kr입니다.", "문의:[이메일]입니다.", EMAIL),
]


def _mask(text: str) -> tuple[str, Counter]:
    counts: Counter = Counter()
    return mask_personal_data(text, counts), counts


def test_the_corpora_are_large_enough_to_mean_something():
    assert len(SURVIVORS) >= 40 and len(PERSONAL) >= 20
    assert {kind for _, _, kind in PERSONAL} == {RRN, FRN, PHONE, EMAIL}


@pytest.mark.parametrize("text", SURVIVORS)
def test_medical_and_insurance_figures_survive_byte_for_byte(text):
    masked, counts = _mask(text)
    assert masked == text
    assert not counts


@pytest.mark.parametrize("text, masked, kind", PERSONAL)
def test_personal_data_is_masked_and_counted_by_kind(text, masked, kind):
    out, counts = _mask(text)
    assert out == masked
    assert counts == Counter({kind: 1})


def test_only_the_check_digit_decides_a_bare_number():
    assert _mask("번호 8503151234566")[0] == "번호 [주민등록번호]"
    assert _mask("번호 8503151234567")[0] == "번호 8503151234567"


def test_counts_add_up_across_kinds_in_one_text():
    text = "주민번호 850315-1234566, 외국인 880515-5123453, 휴대폰 010-1234-5678, 병원 (02) 123-4567, a@b.kr"
    masked, counts = _mask(text)
    assert masked == "주민번호 [주민등록번호], 외국인 [외국인등록번호], 휴대폰 [전화번호], 병원 [전화번호], [이메일]"
    assert counts == Counter({RRN: 1, FRN: 1, PHONE: 2, EMAIL: 1})
